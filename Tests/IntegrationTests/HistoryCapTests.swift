import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// PROTOCOL.md 4.1: no single reply closes a connection. `history` and `since` recovery
/// answer at most `history.max_reply_bytes` bytes and `history.max_recover` publications.
final class HistoryCapTests: IntegrationCase {
    /// About 60 KB of data per publication, like the 60 KB group messages of the issue.
    func publishBig(_ node: GatewayNodeProcess, _ channel: String, _ n: Int, bytes: Int = 60_000) throws {
        let blob = String(repeating: "x", count: bytes)
        let r = try node.http("POST", "/api/v1/publish",
                              body: #"{"channel":"\#(channel)","type":"big.note","data":{"n":\#(n),"b":"\#(blob)"}}"#)
        XCTAssertEqual(r.status, 200, r.text)
    }

    func offsets(_ ok: JSON?) -> [Int64] {
        ok?["publications"]?.arrayValue?.map { $0["offset"]?.intValue ?? -1 } ?? []
    }

    /// The newest `count` offsets up to `last`, oldest first.
    func newest(_ count: Int, upTo last: Int64) -> [Int64] {
        Array((last - Int64(count) + 1)...last)
    }

    /// The issue: 20 x 60 KB in a channel, then `history` limit 50 closed every asker with 4008
    /// and a client resuming with `since` was closed again on every reconnect.
    func testHistoryAndRecoveryOfTwentySixtyKilobytePublicationsFitTheCapAndKeepTheConnection() throws {
        let node = try startNode()
        let (first, hello) = try open(node, "u1")
        let epoch = try XCTUnwrap(hello["ok"]?["epoch"]?.stringValue)
        first.close()
        _ = first.waitClosed()
        for n in 1...20 { try publishBig(node, "user:u1", n) }

        let (session, _) = try open(node, "u1")
        let history = try session.command("history", [("channel", .string("user:u1")), ("limit", .int(50))])
        let ok = try XCTUnwrap(history["ok"], "\(history.serialized().prefix(300))")
        XCTAssertEqual(ok["truncated"]?.boolValue, true)
        XCTAssertEqual(ok["offset"]?.intValue, 20)
        let page = offsets(ok)
        XCTAssertFalse(page.isEmpty, "60 KB publications fit a 256 KiB reply")
        XCTAssertLessThan(page.count, 20)
        XCTAssertEqual(page, newest(page.count, upTo: 20), "the newest page, oldest first")
        XCTAssertLessThanOrEqual(history.serialized().utf8.count, 262_144, "the whole reply within history.max_reply_bytes")
        XCTAssertNotNil(try session.command("ping")["ok"], "the connection stays open")

        // A page that fits is not truncated.
        let small = try session.command("history", [("channel", .string("user:u1")), ("limit", .int(2))])
        XCTAssertEqual(offsets(small["ok"]), [19, 20])
        XCTAssertNotEqual(small["ok"]?["truncated"]?.boolValue, true)

        // Connect with `since`: past the cap, recovered:false with the newest page that fits, and
        // the connection stays (the browser used to reconnect with the same `since` forever).
        var last: Int64 = 20
        for _ in 0..<2 {
            let (resumed, reply) = try open(node, "u1", since: (0, epoch))
            let rok = try XCTUnwrap(reply["ok"], "\(reply.serialized().prefix(300))")
            XCTAssertEqual(rok["recovered"]?.boolValue, false)
            XCTAssertEqual(rok["offset"]?.intValue, last)
            let recovered = offsets(rok)
            XCTAssertFalse(recovered.isEmpty)
            XCTAssertEqual(recovered, newest(recovered.count, upTo: last))
            XCTAssertLessThanOrEqual(reply.serialized().utf8.count, 262_144)
            XCTAssertNotNil(try resumed.command("ping")["ok"], "the resumed connection stays open")
            last = try publish(node, "user:u1", Int(last) + 1)
            XCTAssertEqual(resumed.nextPush()?["offset"]?.intValue, last, "live pushes follow")
        }

        // Subscribe with `since` on another channel kind behaves the same.
        try createProduct(node, "p1")
        for n in 1...20 { try publishBig(node, "product:p1", n) }
        let head = try session.command("history", [("channel", .string("product:p1")), ("limit", .int(1))])
        let productEpoch = try XCTUnwrap(head["ok"]?["epoch"]?.stringValue)
        let sub = try session.command("subscribe", [("channel", .string("product:p1")),
                                                    ("since", .object([("offset", .int(0)), ("epoch", .string(productEpoch))]))])
        let sok = try XCTUnwrap(sub["ok"], "\(sub.serialized().prefix(300))")
        XCTAssertEqual(sok["recovered"]?.boolValue, false)
        let subPage = offsets(sok)
        XCTAssertFalse(subPage.isEmpty)
        XCTAssertEqual(subPage, newest(subPage.count, upTo: 20))
        XCTAssertNotNil(try session.command("ping")["ok"])
        XCTAssertFalse(session.isClosed)
    }

    /// `history.max_recover`: recovery of more publications than that is `recovered:false` with the
    /// newest that many; `history` asking for more answers them with `truncated:true`.
    func testMaxRecoverCapsRecoveryAndHistoryByCount() throws {
        let node = try startNode(env: ["GATEWAY_HISTORY_MAX_RECOVER": "5"])
        let (first, hello) = try open(node, "u1")
        let epoch = try XCTUnwrap(hello["ok"]?["epoch"]?.stringValue)
        first.close()
        _ = first.waitClosed()
        for n in 1...8 { try publish(node, "user:u1", n) }

        let (_, exact) = try open(node, "u1", since: (3, epoch))
        XCTAssertEqual(exact["ok"]?["recovered"]?.boolValue, true, "five after offset 3 fit")
        XCTAssertEqual(offsets(exact["ok"]), [4, 5, 6, 7, 8])

        let (over, capped) = try open(node, "u1", since: (2, epoch))
        XCTAssertEqual(capped["ok"]?["recovered"]?.boolValue, false, "six after offset 2 do not")
        XCTAssertEqual(offsets(capped["ok"]), [4, 5, 6, 7, 8])
        XCTAssertEqual(capped["ok"]?["offset"]?.intValue, 8)

        let latest = try over.command("history", [("channel", .string("user:u1")), ("limit", .int(50))])
        XCTAssertEqual(offsets(latest["ok"]), [4, 5, 6, 7, 8])
        XCTAssertEqual(latest["ok"]?["truncated"]?.boolValue, true)

        let fits = try over.command("history", [("channel", .string("user:u1")), ("limit", .int(5))])
        XCTAssertEqual(offsets(fits["ok"]), [4, 5, 6, 7, 8])
        XCTAssertNotEqual(fits["ok"]?["truncated"]?.boolValue, true)

        // With `since`: the newest of the `limit` publications after it that fit.
        let after = try over.command("history", [("channel", .string("user:u1")), ("limit", .int(6)),
                                                 ("since", .object([("offset", .int(0)), ("epoch", .string(epoch))]))])
        XCTAssertEqual(offsets(after["ok"]), [2, 3, 4, 5, 6])
        XCTAssertEqual(after["ok"]?["truncated"]?.boolValue, true)
        let page = try over.command("history", [("channel", .string("user:u1")), ("limit", .int(3)),
                                                ("since", .object([("offset", .int(1)), ("epoch", .string(epoch))]))])
        XCTAssertEqual(offsets(page["ok"]), [2, 3, 4])
        XCTAssertNotEqual(page["ok"]?["truncated"]?.boolValue, true)
    }

    /// Replies are not "pushes piling up unread": a reply larger than `limits.max_queue`, and
    /// replies a client is slow to read, never close it with 4008.
    func testRepliesLargerThanMaxQueueDoNotClose() throws {
        let node = try startNode(env: ["GATEWAY_LIMITS_MAX_QUEUE": "65536"])
        for n in 1...4 { try publishBig(node, "user:u1", n) }
        let (session, _) = try open(node, "u1")
        let history = try session.command("history", [("channel", .string("user:u1")), ("limit", .int(50))])
        XCTAssertEqual(offsets(history["ok"]), [1, 2, 3, 4], "240 KB fit a 256 KiB reply: \(history.serialized().prefix(200))")
        XCTAssertNotEqual(history["ok"]?["truncated"]?.boolValue, true)

        // Not reading while 4 of those replies (about 1 MB, 15 times max_queue) are produced: the
        // node stops reading this client's commands until it catches up, and closes nothing
        // (it would past max_queue + 4 x max_reply_bytes unread, see the test above).
        session.connection.pauseReading()
        let first: Int64 = 100
        for i in 0..<4 {
            session.sendRawText(#"{"id":\#(first + Int64(i)),"op":"history","channel":"user:u1","limit":50}"#)
        }
        usleep(1_000_000)
        session.connection.resumeReading()
        for i in 0..<4 {
            let reply = try XCTUnwrap(session.reply(id: first + Int64(i), timeout: 20), "reply \(i)")
            XCTAssertEqual(offsets(reply["ok"]), [1, 2, 3, 4], "reply \(i)")
        }
        XCTAssertNotNil(try session.command("ping")["ok"])
        XCTAssertFalse(session.isClosed)
    }

    /// A frame of big `history` commands from a client that never reads: each reply is allowed,
    /// but not megabytes of them held for nobody. Past `max_queue` + 4 x `max_reply_bytes` of
    /// unread replies the client is closed with 4008, and the node serves others as before.
    func testAClientThatNeverReadsItsRepliesIsClosedNotBuffered() throws {
        let node = try startNode()
        for n in 1...4 { try publishBig(node, "user:u1", n) }
        let (session, _) = try open(node, "u1")
        let (bystander, _) = try open(node, "u2")
        session.connection.pauseReading()
        // 64 commands of about 240 KB of reply each: 15 MB, more than loopback buffers take.
        let frame = (0..<64).map { #"{"id":\#(1000 + $0),"op":"history","channel":"user:u1","limit":50}"# }.joined(separator: "\n")
        session.sendRawText(frame)
        usleep(3_000_000)
        XCTAssertNotNil(try bystander.command("ping")["ok"], "others are served")
        session.connection.resumeReading()
        XCTAssertEqual(session.waitClosed(timeout: 30), 4008, "closed for not reading, not buffered")
        XCTAssertTrue(session.closeReason.contains("too slow to read replies"), session.closeReason)
    }

    /// A node that misses publications on pub/sub fills the gap from history in capped pages:
    /// every subscriber still gets each publication once, in order, and nobody is closed.
    func testGapFillLongerThanOneReplyComesInPages() throws {
        try requireSingleRedis("writes the channel log with EVAL on the server port")
        let node = try startNode(env: ["GATEWAY_HISTORY_MAX_REPLY_BYTES": "4096"])
        let (session, hello) = try open(node, "u1")
        let epoch = try XCTUnwrap(hello["ok"]?["epoch"]?.stringValue)
        // Twelve publications stored in history but never announced, as if pub/sub lost them:
        // 1 KB each, and every fourth 5 KB, larger than a whole page (it comes alone).
        let script = """
            for i = 1, 12 do
              local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)
              local blob = string.rep('z', (i % 4 == 0) and 5000 or 1000)
              local push = '{"push":"test.note","channel":"user:u1","offset":' .. off .. ',"epoch":"' .. ARGV[1] ..
                '","ts":1,"data":{"n":' .. off .. ',"b":"' .. blob .. '"}}'
              redis.call('XADD', KEYS[2], '0-' .. off, 'd', push)
            end
            return redis.call('HGET', KEYS[1], 'offset')
            """
        let reply = try redisCommand(["EVAL", script, "2", "gw:{user:u1}:meta", "gw:{user:u1}:log", epoch])
        XCTAssertTrue(reply.contains("12"), reply)
        // The next announced publication shows the node the gap.
        XCTAssertEqual(try publish(node, "user:u1", 13), 13)
        var seen: [Int64] = []
        while seen.count < 13, let push = session.nextPush(timeout: 10) {
            seen.append(push["offset"]?.intValue ?? -1)
        }
        XCTAssertEqual(seen, Array(1...13))
        XCTAssertFalse(session.isClosed)
        XCTAssertNotNil(try session.command("ping")["ok"])

        // A publication larger than the whole reply never comes in `history` or recovery.
        let latest = try session.command("history", [("channel", .string("user:u1")), ("limit", .int(50))])
        XCTAssertEqual(offsets(latest["ok"]), [13], "12 (5 KB) does not fit 4 KiB: \(latest.serialized().prefix(200))")
        XCTAssertEqual(latest["ok"]?["truncated"]?.boolValue, true)
        let alone = try session.command("history", [("channel", .string("user:u1")), ("limit", .int(1)),
                                                    ("since", .object([("offset", .int(11)), ("epoch", .string(epoch))]))])
        XCTAssertEqual(offsets(alone["ok"]), [])
        XCTAssertEqual(alone["ok"]?["truncated"]?.boolValue, true)
        let (resumed, reply2) = try open(node, "u1", since: (11, epoch))
        XCTAssertEqual(reply2["ok"]?["recovered"]?.boolValue, false)
        XCTAssertEqual(offsets(reply2["ok"]), [13])
        XCTAssertNotNil(try resumed.command("ping")["ok"])
    }

    /// One RESP command to the test Redis; the raw reply as text.
    func redisCommand(_ args: [String]) throws -> String {
        var out = "*\(args.count)\r\n"
        for a in args { out += "$\(a.utf8.count)\r\n\(a)\r\n" }
        return String(decoding: try rawExchange(port: redis.port, Array(out.utf8), readUntilClose: false), as: UTF8.self)
    }
}
