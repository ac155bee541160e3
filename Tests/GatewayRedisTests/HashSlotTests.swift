import GatewayRedis
import XCTest

/// Slots as Redis computes them (vectors from the Redis Cluster specification).
final class HashSlotTests: XCTestCase {
    func testChannelsAreGroupedOnePerSlotForSSUBSCRIBE() {
        let channels = ["gw:{user:a}", "gw:{user:b}", "gw:{user:a}", "x{user:b}"]
        let groups = HashSlot.groupedBySlot(channels)
        XCTAssertEqual(groups.count, 2)
        for group in groups { XCTAssertEqual(Set(group.map { HashSlot.of($0) }).count, 1, "one slot per command") }
        XCTAssertEqual(groups.flatMap { $0 }.sorted(), channels.sorted(), "nothing lost or added")
    }

    func testCRC16AndSlotOfKnownKeys() {
        XCTAssertEqual(HashSlot.crc16(Array("123456789".utf8)[...]), 0x31C3)
        XCTAssertEqual(HashSlot.of("123456789"), 12739)
        XCTAssertEqual(HashSlot.of("foo"), 12182)
        XCTAssertEqual(HashSlot.of(""), 0)
    }

    func testHashTags() {
        XCTAssertEqual(HashSlot.of("{user1000}.following"), HashSlot.of("{user1000}.followers"))
        XCTAssertEqual(HashSlot.of("{user1000}.following"), HashSlot.of("user1000"))
        XCTAssertEqual(HashSlot.of("foo{}{bar}"), Int(HashSlot.crc16(Array("foo{}{bar}".utf8)[...]) % 16384), "an empty tag hashes the whole key")
        XCTAssertEqual(HashSlot.of("foo{{bar}}zap"), HashSlot.of("{bar"), "the tag runs from the first { to the next }")
        XCTAssertEqual(HashSlot.of("foo{bar}{zap}"), HashSlot.of("bar"), "only the first tag counts")
        XCTAssertEqual(HashSlot.of("gw:{product:p1}:stock"), HashSlot.of("product:p1"))
    }

    func testSlotTagsAreShortestAndHashToTheirSlot() {
        for slot in [0, 1, 5_000, 12_739, 16_383] {
            let tag = SlotTag.of(slot: slot)
            XCTAssertEqual(HashSlot.of(tag), slot)
            XCTAssertTrue(SlotTag.isValid(tag))
            XCTAssertLessThanOrEqual(tag.count, 4)
        }
        var lengths = [Int: Int]()
        for slot in 0..<HashSlot.count { lengths[SlotTag.of(slot: slot).count, default: 0] += 1 }
        XCTAssertEqual(lengths.values.reduce(0, +), HashSlot.count, "every slot has a tag")
        // Each tag is the shortest: slots reached by a string of 1 or 2 characters have such a tag.
        let digits = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        var short = Set<Int>()
        for a in digits {
            short.insert(HashSlot.of(String(a)))
            for b in digits { short.insert(HashSlot.of(String([a, b]))) }
        }
        for slot in 0..<HashSlot.count { XCTAssertEqual(SlotTag.of(slot: slot).count <= 2, short.contains(slot)) }
        XCTAssertEqual(SlotTag.of(slot: HashSlot.of("0")), "0")
        let tag = SlotTag.for(key: "product:p1")
        XCTAssertEqual(HashSlot.of("gw:{\(tag)}:order:o-\(tag)-1"), HashSlot.of("gw:{product:p1}:stock"))
    }

    func testInvalidTags() {
        XCTAssertFalse(SlotTag.isValid(""))
        XCTAssertFalse(SlotTag.isValid("nope"), "a string that is not the tag of its slot")
        XCTAssertFalse(SlotTag.isValid("A"))
        XCTAssertFalse(SlotTag.isValid("00000"))
        XCTAssertFalse(SlotTag.isValid("0-1"))
    }
}
