import GatewayProtocol
import XCTest

final class EventsQueryTests: XCTestCase {
    func testDefaultsAndValues() throws {
        XCTAssertEqual(try EventsQuery.decode("").get(), EventsQuery(after: nil, limit: 100))
        XCTAssertEqual(try EventsQuery.decode("after=1764600000000-3&limit=1000").get(),
                       EventsQuery(after: "1764600000000-3", limit: 1000))
        XCTAssertEqual(try EventsQuery.decode("limit=1&cb=x").get().limit, 1, "other parameters are ignored")
        XCTAssertEqual(try EventsQuery.decode("after=18446744073709551615-0").get().after, "18446744073709551615-0")
    }

    func testRefusals() {
        for query in ["after=", "after=1", "after=1-", "after=-1", "after=a-1", "after=1-2-3", "after=%31-2",
                      "limit=0", "limit=1001", "limit=-1", "limit=1e2", "limit=", "limit=00001",
                      "after=1-1&after=2-2", "limit=1&limit=2",
                      // Beyond 64 bits, or the last id (Redis refuses both: a 400, not a storage error).
                      "after=18446744073709551616-0", "after=1-99999999999999999999", "after=18446744073709551615-18446744073709551615"] {
            guard case .failure(let e) = EventsQuery.decode(query) else { return XCTFail("\(query) was taken") }
            XCTAssertEqual(e.code, .badRequest, query)
        }
    }
}
