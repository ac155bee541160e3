import Foundation
import GatewayAuth
import GatewayClient
import GatewayCrypto
import GatewayProtocol
import XCTest

/// SplitMix64: small, fast, and the same sequence for the same seed on every machine.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One fuzzing WebSocket: counts replies per id, pushes and the close code.
final class FuzzSocket: @unchecked Sendable {   // its state is under `cond`
    private(set) var conn: ClientConnection!
    let user: String
    private let cond = NSCondition()
    private var opened = false
    private(set) var closedCode: UInt16??
    private var replies: [Int64: Int] = [:]
    private(set) var idless = 0
    var nextID: Int64 = 2

    private init(user: String) { self.user = user }

    /// Opens the socket (no `connect` sent yet).
    static func open(_ loop: ClientLoop, url: String, user: String) throws -> FuzzSocket {
        let s = FuzzSocket(user: user)
        let handlers = ClientHandlers(
            onOpen: { _ in s.event { $0.opened = true } },
            onMessage: { _, json in s.message(json) },
            onClose: { _, code, _ in s.event { $0.closedCode = .some(code) } })
        let conn = try loop.connect(url: url, handlers: handlers)
        s.conn = conn
        let deadline = Date().addingTimeInterval(5)
        s.cond.lock()
        while !s.opened && s.closedCode == nil { if !s.cond.wait(until: deadline) { break } }
        let ok = s.opened
        s.cond.unlock()
        if !ok {
            conn.abort()
            throw TestError("fuzz socket for \(user) did not open")
        }
        return s
    }

    private func event(_ body: (FuzzSocket) -> Void) {
        cond.lock()
        body(self)
        cond.broadcast()
        cond.unlock()
    }

    private func message(_ json: JSON) {
        event { s in
            if json["push"] != nil { return }
            if let id = json["id"]?.intValue { s.replies[id, default: 0] += 1 } else { s.idless += 1 }
        }
    }

    var isClosed: Bool { cond.withLock { closedCode != nil } }
    var closeCode: UInt16? { cond.withLock { closedCode ?? nil } }

    func replyCount(_ id: Int64) -> Int { cond.withLock { replies[id] ?? 0 } }

    /// Ids this socket gave out once each (not those a mutation set or duplicated).
    var unique: Set<Int64> = []

    /// Unique ids answered more than once.
    var doubled: [Int64] { cond.withLock { replies.filter { $0.value > 1 && unique.contains($0.key) }.map(\.key).sorted() } }

    /// Waits until every id has a reply or the socket closed; returns the ids still unanswered.
    func await(_ ids: [Int64], timeout: Double) -> [Int64] {
        let deadline = Date().addingTimeInterval(timeout)
        cond.lock()
        defer { cond.unlock() }
        while true {
            let missing = ids.filter { (replies[$0] ?? 0) == 0 }
            if missing.isEmpty || closedCode != nil { return closedCode != nil ? [] : missing }
            if !cond.wait(until: deadline) { return ids.filter { (replies[$0] ?? 0) == 0 } }
        }
    }
}

/// Hostile traffic from every role against two real nodes on a real Redis: mutated
/// commands for every op of the contract, odd frames, mutated HTTP calls to every
/// `/api/v1` route. The nodes must stay up (`/healthz`, processes alive), every command
/// with an id must get exactly one reply (or the connection closes with a documented
/// code), and a bystander connected throughout keeps receiving its pushes. Seeded:
/// `FUZZ_SEED=<n>` replays a run; `FUZZ_SECONDS` bounds it (default 25).
final class NetworkFuzzTests: IntegrationCase {
    /// Documented close codes (PROTOCOL 2.6 and 4.1), plus 1000/1005 (a plain close) and
    /// 1006 (socket ended: a dead node, reported apart).
    static let documentedCloses: Set<UInt16> = [1000, 1001, 1005, 1009, 4001, 4002, 4003, 4008, 4010, 4011, 4029]
    /// WebSocket-level codes acceptable only after a WebSocket-level violation (binary, invalid UTF-8).
    static let frameLevelCloses: Set<UInt16> = [1002, 1003, 1007]

    private var rng = SplitMix64(seed: 1)
    private var seed: UInt64 = 1
    private var findings: [String] = []
    private var stats: [String: Int] = [:]

    func testMutatedTrafficNeverCrashesWedgesOrDoubleAnswers() throws {
        seed = UInt64(ProcessInfo.processInfo.environment["FUZZ_SEED"] ?? "") ?? 20261201
        rng = SplitMix64(seed: seed)
        let seconds = Double(ProcessInfo.processInfo.environment["FUZZ_SECONDS"] ?? "") ?? 25
        print("network fuzz: seed \(seed) (replay with FUZZ_SEED=\(seed)), \(Int(seconds)) s")

        let n1 = try startNode("n1")
        let n2 = try startNode("n2")
        let nodes = [n1, n2]

        // A product with a group, a buyer who owns it, a gift and a friend-pay request to aim at.
        try createProduct(n1, "fz-p1", merchant: "m1")
        try createProduct(n1, "fz-p2", merchant: "m2")
        _ = try uploadKeys(n1, "fz-p1", (0..<40).map { "FZK-\($0)" })
        let owned = try buy(n1, "fz-buyer", "fz-p1")
        let orderID = owned["id"]?.stringValue ?? "o-none"
        let gift = try order(n1, #"{"buyer":"fz-buyer","product":"fz-p1","kind":"gift","gift":{"to":"fz-stranger"}}"#)
        let giftCode = gift["gift"]?["code"]?.stringValue ?? "nocode"
        let fp = try order(n1, #"{"buyer":"fz-buyer","product":"fz-p1","kind":"friendpay","friendpay":{"to":"fz-bot"}}"#)
        let payCode = fp["pay_code"]?.stringValue ?? "nocode"
        let context = FuzzContext(order: orderID, giftCode: giftCode, payCode: payCode, otherOrder: fp["id"]?.stringValue ?? "o-x")

        // The bystander: on n2, pushes published on n1 must keep arriving in order.
        var bystander = try openBystander(n2)
        var bystanderOffset = bystander.1
        var bystanderChecks = 0

        let roles: [(user: String, role: Role, products: [String], moderator: Bool)] = [
            ("fz-buyer", .buyer, [], false), ("fz-stranger", .buyer, [], false), ("fz-bot", .bot, ["fz-p1"], false),
            ("fz-mod", .bot, ["fz-p1"], true), ("fz-merchant", .merchant, ["fz-p1"], false),
        ]
        var sockets: [String: FuzzSocket] = [:]
        let deadline = Date().addingTimeInterval(seconds)
        var round = 0
        while Date() < deadline {
            round += 1
            let r = roles[Int(rng.next() % UInt64(roles.count))]
            let node = nodes[Int(rng.next() % 2)]
            var lastSent = ""

            switch rng.next() % 10 {
            case 0, 1:
                // A mutated HTTP call.
                lastSent = try fuzzHTTP(node, context)
            case 2:
                // A mutated connect as the first frame of a fresh socket.
                lastSent = fuzzConnect(node, r)
            default:
                // A batch of mutated commands on a connected socket of this role.
                let key = "\(r.user)@\(node.name)"
                if sockets[key] == nil || sockets[key]!.isClosed {
                    sockets[key] = connectRole(node, r.user, r.role, r.products, r.moderator)
                }
                if let s = sockets[key] { lastSent = fuzzBatch(s, node, r.user, context) }
            }

            // Every few rounds, and whenever a node died: health and the bystander.
            /// Records and restarts every node that exited; true if one had.
            func reapDead() throws -> Bool {
                usleep(50_000)
                let dead = nodes.filter { !($0.process?.isRunning ?? false) }
                for n in dead {
                    // The crash message and the first frames of the backtrace, not the register dump.
                    let log = n.log().split(separator: "\n")
                    let start = log.firstIndex { $0.contains("Fatal error") || $0.lowercased().contains("crashed") || $0.contains("ERROR: AddressSanitizer") } ?? max(0, log.count - 15)
                    let crash = log[start...].filter { line in
                        let t = line.trimmingCharacters(in: .whitespaces)
                        let register = t.split(separator: " ").first.map { ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "rflags", "cs"].contains(String($0)) || ($0.hasPrefix("r") && $0.count <= 3) } ?? false
                        return !register && !t.hasPrefix("0x")
                    }.prefix(16).joined(separator: "\n")
                    findings.append("node \(n.name) died after round \(round); last sent: \(lastSent.prefix(600))\n--- log:\n" + crash)
                    count("node crashes")
                    n.stop()
                    try n.start()
                    sockets = sockets.filter { !$0.key.hasSuffix("@\(n.name)") }
                }
                if !dead.isEmpty {
                    bystander = try openBystander(n2)
                    bystanderOffset = bystander.1
                }
                return !dead.isEmpty
            }
            if try reapDead() || round % 8 == 0 {
                for n in nodes {
                    let h = try? n.http("GET", "/healthz", key: nil)
                    if h?.status != 200, !(try reapDead()) {
                        findings.append("node \(n.name) /healthz \(h.map { "\($0.status)" } ?? "no answer") after round \(round); last sent: \(lastSent.prefix(600))")
                    }
                }
                // The bystander gets its push, next offset, within 5 s.
                guard let r = try? n1.http("POST", "/api/v1/publish", body: #"{"channel":"user:fz-bystander","type":"fuzz.bystander","data":{"n":\#(round)}}"#),
                      r.status == 200, let off = r.json?["offset"]?.intValue else {
                    if !(try reapDead()) { findings.append("publish to the bystander failed after round \(round); last sent: \(lastSent.prefix(600))") }
                    continue
                }
                var got: JSON?
                let until = Date().addingTimeInterval(5)
                while Date() < until, let p = bystander.0.nextPush(timeout: until.timeIntervalSinceNow) {
                    if p["push"]?.stringValue == "fuzz.bystander" { got = p; break }
                }
                bystanderChecks += 1
                if let got, got["offset"]?.intValue == off, off == bystanderOffset + 1 {
                    bystanderOffset = off
                } else if !(try reapDead()) {
                    findings.append("bystander on n2: expected push at offset \(bystanderOffset + 1) (published \(off)) after round \(round), got \(got?.serialized() ?? "nothing"); last sent: \(lastSent.prefix(300))")
                    bystander = try openBystander(n2)
                    bystanderOffset = bystander.1
                }
            }
        }
        for s in sockets.values { s.conn.close() }
        print("network fuzz: seed \(seed), \(round) rounds, \(bystanderChecks) bystander checks, "
            + stats.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        for f in findings.prefix(40) { XCTFail("[FUZZ_SEED=\(seed)] \(f)") }
        if findings.count > 40 { XCTFail("[FUZZ_SEED=\(seed)] \(findings.count - 40) more findings") }
    }

    // MARK: Roles and the bystander

    struct FuzzContext {
        var order: String
        var giftCode: String
        var payCode: String
        var otherOrder: String
    }

    private func openBystander(_ node: GatewayNodeProcess) throws -> (GatewaySession, Int64) {
        let (s, reply) = try open(node, "fz-bystander")
        guard let offset = reply["ok"]?["offset"]?.intValue else { throw TestError("bystander connect failed: \(reply.serialized())") }
        return (s, offset)
    }

    private func connectRole(_ node: GatewayNodeProcess, _ user: String, _ role: Role, _ products: [String], _ moderator: Bool) -> FuzzSocket? {
        guard let s = try? FuzzSocket.open(Self.loop, url: node.wsURL, user: user) else {
            count("socket open failed")
            return nil
        }
        let t = token(user, role: role, products: products, moderator: moderator)
        s.conn.send(#"{"id":1,"op":"connect","token":"\#(t)"}"#)
        if !s.await([1], timeout: 5).isEmpty {
            findings.append("\(user)@\(node.name): no reply to a valid connect within 5 s")
            return nil
        }
        return s.isClosed ? nil : s
    }

    // MARK: Values

    private func pick<T>(_ list: [T]) -> T { list[Int(rng.next() % UInt64(list.count))] }
    private func chance(_ p: Double) -> Bool { Double(rng.next() % 1_000_000) / 1_000_000 < p }
    private func count(_ what: String) { stats[what, default: 0] += 1 }

    /// Values that break JSON parsers and unchecked arithmetic (raw JSON text), and whether
    /// the line stays unambiguous JSON (deep nesting and lone surrogates may be refused as
    /// not JSON, with an id-less error, so their ids are not held to a reply).
    private func evilValue() -> (String, plain: Bool) {
        switch rng.next() % 30 {
        case 0: return ("9223372036854775807", true)
        case 1: return ("-9223372036854775808", true)
        case 2: return ("9223372036854775808", true)
        case 3: return ("18446744073709551616", true)
        case 4: return ("1e308", true)
        case 5: return ("-1e308", true)
        case 6: return ("-1", true)
        case 7: return ("0", true)
        case 8: return ("1.5", true)
        case 9: return ("-0", true)
        case 10: return ("4.9e-324", true)
        case 11: return ("true", true)
        case 12: return ("null", true)
        case 13: return (#""""#, true)
        case 14: return ("[]", true)
        case 15: return (#"{"offset":1,"epoch":"x"}"#, true)
        case 16: return ("\"" + String(repeating: "A", count: pick([100, 1001, 5000, 40_000])) + "\"", true)
        case 17: return ("\"" + String(repeating: "ü😀", count: pick([10, 500, 3000])) + "\"", true)
        case 18:
            let d = pick([64, 512, 20_000])
            return (String(repeating: "[", count: d) + "1" + String(repeating: "]", count: d), false)
        case 19:
            let d = pick([64, 1000, 20_000])
            return (String(repeating: #"{"a":"#, count: d) + "1" + String(repeating: "}", count: d), false)
        case 20: return (#""\u0000\u0001\u001f""#, true)
        case 21: return (#""\ud800""#, false)
        case 22: return (#""\udc00\ud83d""#, false)
        case 23: return ("\"\u{202E}\u{0301}\u{FEFF}\u{200B}x\"", true)
        case 24: return (#""group:fz-p1\n""#, true)
        case 25: return (#""user:fz-buyer""#, true)
        case 26: return (#""product:""#, true)
        case 27: return ("\"" + String(repeating: "x", count: 65) + "\"", true)
        case 28: return ("31536001", true)
        default: return ("\"\(pick(["mute", "unmute", "delete", "ban", "MUTE", "group:", ":", "..", "%00"]))\"", true)
        }
    }

    /// A valid-looking command for `op` as (key, raw JSON) pairs.
    private func baseFields(_ op: String, _ user: String, _ c: FuzzContext) -> [(String, String)] {
        let channel = pick(["\"group:fz-p1\"", "\"product:fz-p1\"", "\"user:\(user)\"", "\"user:fz-other\"", "\"group:fz-p2\"", "\"group:nope\""])
        // Boundary integers are common in the base values too: that is where unchecked arithmetic breaks.
        let edge = ["-1", "0", "9223372036854775807", "-9223372036854775808", "1e308"]
        let since = #"{"offset":\#(pick(["0", "1", "5", "1000000"] + edge)),"epoch":"\#(pick(["e1", "x", ""]))"}"#
        switch op {
        case "subscribe": return [("channel", channel)] + (chance(0.4) ? [("since", since)] : [])
        case "unsubscribe": return [("channel", channel)]
        case "publish":
            return [("channel", pick(["\"group:fz-p1\"", channel])),
                    ("data", #"{"text":"fuzz \#(rng.next() % 1000)""# + (chance(0.3) ? #","reply_to":\#(pick(["1", "-1", "9223372036854775807"]))"# : "") + "}")]
        case "history": return [("channel", channel)] + (chance(0.4) ? [("since", since)] : []) + (chance(0.5) ? [("limit", pick(["1", "50", "500", "501"] + edge))] : [])
        case "presence": return [("channel", channel)]
        case "watch": return [("product", pick(["\"fz-p1\"", "\"fz-p2\"", "\"nope\""]))] + (chance(0.5) ? [("below", pick(["1", "1000", "0"] + edge))] : [])
        case "unwatch": return [("product", pick(["\"fz-p1\"", "\"nope\""]))]
        case "watches", "ping": return []
        case "order.get": return [("order", "\"\(pick([c.order, c.otherOrder, "o-nope"]))\"")]
        case "gift.claim", "gift.decline": return [("code", "\"\(pick([c.giftCode, "nocode"]))\"")]
        case "friendpay.view": return [("code", "\"\(pick([c.payCode, c.giftCode, "nocode"]))\"")]
        case "moderate":
            return [("channel", "\"group:fz-p1\""), ("action", pick(["\"mute\"", "\"unmute\"", "\"delete\""])),
                    ("user", pick(["\"fz-buyer\"", "\"fz-stranger\"", "\"\(user)\""])), ("offset", pick(["1", "2"] + edge)), ("seconds", pick(["1", "60", "31536000", "31536001"] + edge))]
        case "refresh": return [("token", "\"\(token(user, role: .buyer))\"")]
        case "connect": return [("token", "\"\(token(user))\"")]
        default: return []
        }
    }

    static let ops = ["subscribe", "unsubscribe", "publish", "history", "presence", "watch", "unwatch", "watches", "order.get",
                      "gift.claim", "gift.decline", "friendpay.view", "moderate", "ping", "refresh", "connect"]

    /// One mutated command line; `tracked` when its id is valid and the line is plain JSON.
    private func mutatedCommand(_ id: Int64, _ user: String, _ c: FuzzContext) -> (line: String, tracked: Bool, uniqueID: Bool) {
        let op = pick(Self.ops)
        var fields = [("id", "\(id)"), ("op", "\"\(op)\"")] + baseFields(op, user, c)
        var tracked = true
        var idMutated = false
        let mutations = Int(rng.next() % 3)
        for _ in 0..<mutations {
            switch rng.next() % 7 {
            case 0, 1:
                // A field's value replaced (not the id).
                let i = 1 + Int(rng.next() % UInt64(max(1, fields.count - 1)))
                if i < fields.count {
                    let (v, plain) = evilValue()
                    fields[i].1 = v
                    tracked = tracked && plain
                }
            case 2:
                if fields.count > 2 { fields.remove(at: 2 + Int(rng.next() % UInt64(fields.count - 2))) }
            case 3:
                let (v, plain) = evilValue()
                fields.append((pick(["zz", "since", "limit", "seconds", "offset", "data", "channel", "__proto__"]), v))
                tracked = tracked && plain && !fields.dropLast().contains { $0.0 == fields.last!.0 }
            case 4:
                // A duplicated key: parsers differ on which wins, or refuse.
                let k = fields[Int(rng.next() % UInt64(fields.count))].0
                fields.append((k, evilValue().0))
                tracked = false
                if k == "id" { idMutated = true }
            case 5:
                fields[1].1 = pick(["\"\"", "1", "null", "\"PING\"", "\"subscribe \"", "\"\u{0130}\"", "[\"ping\"]", "\"" + String(repeating: "o", count: 300) + "\""])
            default:
                // The id itself: only positive integers are held to a reply.
                fields[0].1 = pick(["0", "-1", "9223372036854775807", "\"7\"", "1.5", "null", "[]"])
                tracked = false
                idMutated = true
            }
        }
        let line = "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        return (line, tracked, !idMutated)
    }

    // MARK: WebSocket rounds

    private func fuzzBatch(_ s: FuzzSocket, _ node: GatewayNodeProcess, _ user: String, _ c: FuzzContext) -> String {
        let n = pick([1, 1, 1, 2, 5, 20, 80])
        var lines: [String] = []
        var ids: [Int64] = []
        for _ in 0..<n {
            let id = s.nextID
            s.nextID += 1
            let (line, tracked, uniqueID) = mutatedCommand(id, user, c)
            lines.append(line)
            if tracked { ids.append(id) }
            if uniqueID { s.unique.insert(id) }
            if chance(0.05) { lines.append(pick(["{", "not json", "[1,2]", "\"str\"", "{\"id\":", "}{"])) }
        }
        let text = lines.joined(separator: "\n")
        var bytes = Array(text.utf8)
        var frameLevel = false
        switch rng.next() % 12 {
        case 0:
            s.conn.sendRaw(bytes, kind: .text, fragmentSize: 1 + Int(rng.next() % 40))
            count("ws fragmented")
        case 1:
            s.conn.sendRaw(bytes, kind: .binary)
            frameLevel = true
            ids = []
            count("ws binary")
        case 2:
            // Invalid UTF-8 spliced in: a lone continuation byte, an overlong NUL, a surrogate, 0xFF.
            let bad: [[UInt8]] = [[0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xFF], [0xF4, 0x90, 0x80, 0x80]]
            bytes.insert(contentsOf: pick(bad), at: Int(rng.next() % UInt64(bytes.count + 1)))
            s.conn.send(bytes: bytes)
            frameLevel = true
            ids = []
            count("ws invalid utf-8")
        case 3:
            s.conn.send(bytes: [])
            s.conn.send(text)
            count("ws empty frame first")
        default:
            s.conn.send(text)
            count(n > 1 ? "ws batch" : "ws single")
        }
        count("commands")
        let missing = s.await(ids, timeout: 10)
        if !missing.isEmpty {
            findings.append("\(user)@\(node.name): no reply within 10 s to ids \(missing.prefix(5)) of \(ids.count) (connection open); frame: \(text.prefix(600))")
            s.conn.abort()
        }
        if !s.doubled.isEmpty {
            findings.append("\(user)@\(node.name): ids answered twice \(s.doubled.prefix(5)); frame: \(text.prefix(600))")
            s.conn.abort()
        }
        if s.isClosed && s.closeCode == nil { count("ended without a close frame") }
        if let code = s.closeCode {
            count("closed \(code)")
            let allowed = Self.documentedCloses.contains(code) || (frameLevel && Self.frameLevelCloses.contains(code))
            if !allowed && (node.process?.isRunning ?? false) {
                findings.append("\(user)@\(node.name): closed with undocumented code \(code); frame: \(text.prefix(600))")
            }
        }
        return "ws \(user)@\(node.name): " + text
    }

    private func fuzzConnect(_ node: GatewayNodeProcess, _ r: (user: String, role: Role, products: [String], moderator: Bool)) -> String {
        guard let s = try? FuzzSocket.open(Self.loop, url: node.wsURL, user: r.user) else { return "connect: socket failed" }
        defer { s.conn.close() }
        var fields: [(String, String)] = [("id", "1"), ("op", "\"connect\""), ("token", "\"\(token(r.user, role: r.role, products: r.products, moderator: r.moderator))\"")]
        var tracked = true
        switch rng.next() % 9 {
        case 0:
            let (v, plain) = evilValue()
            fields[2].1 = v
            tracked = plain
        case 1: fields.remove(at: 2)
        case 2: fields.append(("since", pick([#"{"offset":-1,"epoch":"e"}"#, #"{"offset":9223372036854775807,"epoch":""}"#, #"{"offset":"1"}"#, "[]", "1e308"])))
        case 3:
            // Tokens with odd claims: long names, odd subs, far-off exp, no exp.
            let claims = pick([#"{"sub":"fz-x","exp":9223372036854775807}"#, #"{"sub":"fz-x","exp":-1}"#, #"{"sub":"","exp":4000000000}"#,
                               #"{"sub":"fz-x","exp":4000000000,"name":"\#(String(repeating: "😀", count: 200))"}"#,
                               #"{"sub":"fz-x","exp":4000000000,"role":"admin"}"#, #"{"sub":"fz-x","exp":4000000000,"products":"fz-p1"}"#,
                               #"{"sub":["a"],"exp":4000000000}"#, #"{"sub":"fz-x","exp":1e308}"#, #"{"exp":4000000000}"#])
            fields[2].1 = "\"\(signedToken(claims))\""
        case 4: fields[2].1 = pick([#""a.b.c""#, #""eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.""#, "\"\(String(repeating: "A", count: 60_000))\""])
        case 5: fields[0].1 = pick(["0", "-1", "\"1\"", "null"]); tracked = false
        case 6: fields.append(("token", "\"other\"")); tracked = false
        case 7: fields[1].1 = "\"ping\""
        default: fields.append(("zz", evilValue().0))
        }
        let line = "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        s.conn.send(line)
        count("connect mutated")
        if tracked {
            let missing = s.await([1], timeout: 10)
            if !missing.isEmpty { findings.append("\(r.user)@\(node.name): no reply to a mutated connect within 10 s: \(line.prefix(400))") }
        } else {
            _ = s.await([1], timeout: 1)
        }
        if s.replyCount(1) > 1 { findings.append("\(r.user)@\(node.name): connect answered twice: \(line.prefix(400))") }
        if let code = s.closeCode, !Self.documentedCloses.contains(code), node.process?.isRunning ?? false {
            findings.append("\(r.user)@\(node.name): mutated connect closed with undocumented code \(code): \(line.prefix(400))")
        }
        return "connect \(r.user)@\(node.name): " + line
    }

    private func signedToken(_ claims: String) -> String {
        func b64(_ b: [UInt8]) -> String {
            Data(b).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let head = b64(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "." + b64(Array(claims.utf8))
        return head + "." + b64(Crypto.hmacSHA256(key: Array(TestSecrets.auth.utf8), message: Array(head.utf8)))
    }

    // MARK: HTTP rounds

    private func fuzzHTTP(_ node: GatewayNodeProcess, _ c: FuzzContext) throws -> String {
        let id = pick(["fz-p1", "fz-p2", c.order, c.otherOrder, "nope", "..", "%00", "%FF%FE", String(repeating: "a", count: 3000), "a%2Fb", "\u{0130}"]
            .map { $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? $0 })
        let routes: [(String, String, [(String, String)])] = [
            ("POST", "/api/v1/products", [("id", "\"fz-new-\(rng.next() % 100)\""), ("merchant", "\"m1\""), ("title", "\"T\""), ("price", "100"), ("currency", "\"CNY\"")]),
            ("GET", "/api/v1/products/\(id)", []),
            ("PATCH", "/api/v1/products/\(id)", [("price", pick(["1500", "1"])), ("title", "\"New\"")]),
            ("POST", "/api/v1/products/\(id)/keys", [("keys", pick([#"["FZN-\#(rng.next())"]"#, "[]", #"[""]"#]))]),
            ("POST", "/api/v1/orders", [("buyer", "\"fz-stranger\""), ("product", "\"fz-p1\""), ("quantity", "1"), ("kind", pick(["\"normal\"", "\"gift\"", "\"friendpay\""])),
                                        ("gift", #"{"to":"fz-buyer","message":"m"}"#), ("idempotency_key", "\"k\(rng.next() % 5)\"")]),
            ("GET", "/api/v1/orders/\(id)", []),
            ("POST", "/api/v1/orders/\(id)/payments", [("payer", "\"fz-stranger\"")]),
            ("POST", "/api/v1/payments/notify", [("payment", "\"pay-x\""), ("order", "\"\(c.otherOrder)\""), ("amount", "1999"), ("currency", "\"CNY\""),
                                                  ("status", pick(["\"success\"", "\"failed\""])), ("trade_no", "\"T1\"")]),
            ("POST", "/api/v1/orders/\(id)/cancel", []),
            ("POST", "/api/v1/orders/\(id)/refund", []),
            ("POST", "/api/v1/publish", [("channel", pick(["\"group:fz-p1\"", "\"user:fz-stranger\"", "\"product:fz-p1\""])), ("type", "\"fz.note\""), ("data", #"{"n":1}"#)]),
            ("POST", "/api/v1/users/\(id)/disconnect", [("reason", "\"fuzz\"")]),
            ("POST", "/api/v1/users/\(id)/ban", [("seconds", "1")]),
            ("DELETE", "/api/v1/users/\(id)/ban", []),
            ("GET", "/api/v1/payments/\(id)", []),
            ("GET", "/api/v1/events?after=\(pick(["0", "-1", "x", "9223372036854775808"]))&limit=\(pick(["1", "1001", "-5"]))", []),
            ("GET", "/api/v1/users/\(id)/memberships", []),
            ("GET", "/api/v1/products/\(id)/also-bought?limit=\(pick(["5", "-1", "99999999999999999999"]))", []),
            ("POST", "/api/v1/sales", [("id", "\"fz-sale\""), ("product", "\"fz-p1\""), ("price", "100"), ("quantity", "1"), ("starts_at", "0"), ("ends_at", "1")]),
            ("POST", "/api/v1/sales/\(id)/close", []),
        ]
        let route = pick(routes)
        var (method, path, fields) = (route.0, route.1, route.2)
        var bodyText: String? = fields.isEmpty && method == "GET" ? nil : ""
        for _ in 0..<Int(rng.next() % 3) {
            switch rng.next() % 5 {
            case 0 where !fields.isEmpty: fields[Int(rng.next() % UInt64(fields.count))].1 = evilValue().0
            case 1 where !fields.isEmpty: fields.remove(at: Int(rng.next() % UInt64(fields.count)))
            case 2: fields.append((pick(["zz", "price", "quantity", "amount", "seconds"]), evilValue().0))
            case 3: method = pick(["GET", "POST", "PATCH", "DELETE", "PUT"])
            default: break
            }
        }
        if bodyText != nil {
            bodyText = "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
            switch rng.next() % 8 {
            case 0: bodyText = pick(["", "[]", "null", "{", "\"x\"", "1e308", String(repeating: "[", count: 10_000)])
            case 1: bodyText = "{\"pad\":\"" + String(repeating: "x", count: pick([70_000, 200_000])) + "\"}"
            default: break
            }
        }
        var body = bodyText.map { Array($0.utf8) }
        if body != nil, chance(0.1) { body!.insert(contentsOf: [0xC0, 0x80, 0xFF], at: body!.count / 2) }
        var headers: [String: String] = [:]
        var key: String? = pick([TestSecrets.shopKey, TestSecrets.shopKey, TestSecrets.merchantKey, "wrong", ""])
        if key == "" { key = nil }
        if path.hasPrefix("/api/v1/payments/notify") {
            key = nil
            let sig = Crypto.hex(Crypto.hmacSHA256(key: Array(TestSecrets.payments.utf8), message: body ?? []))
            headers["X-Signature"] = pick([sig, sig, "00", ""])
        }
        count("http \(method)")
        let r = try? httpRequest(port: node.port, method, path, body: body, key: key, headers: headers)
        if let r {
            count("http \(r.status / 100)xx")
            if r.status >= 500 { count("http 5xx: \(method) \(path.prefix(40))") }
        } else {
            count("http no answer")
        }
        return "http \(node.name): \(method) \(path.prefix(200)) \(String(decoding: (body ?? []).prefix(400), as: UTF8.self))"
    }
}
