import ArgumentParser
import Foundation
import GatewayCrypto
import GatewayProtocol
import GatewayTestSupport

/// The shop backend and payment provider as the commerce scenarios play them: one
/// keep-alive connection per caller, JSON in and out.
final class ShopClient {
    let endpoint: Endpoint
    private let conn: HTTPConnection
    private let auth: [(String, String)]

    init(_ endpoint: Endpoint, shopKey: String, timeout: Double = 10) {
        self.endpoint = endpoint
        conn = HTTPConnection(host: endpoint.host, port: endpoint.port, timeout: timeout)
        auth = [("Authorization", "Bearer \(shopKey)"), ("Content-Type", "application/json")]
    }

    /// Status and parsed body (nil when not JSON).
    func call(_ method: String, _ path: String, _ body: String? = nil, headers: [(String, String)]? = nil,
              idempotent: Bool = false) throws -> (status: Int, json: JSON?, text: String) {
        let r = try conn.request(method, path, body: body.map { Array($0.utf8) } ?? [], headers: headers ?? auth,
                                 idempotent: idempotent)
        return (r.status, try? JSON.parse(r.body), String(r.text.prefix(200)))
    }

    /// Signed like the payment provider: X-Signature = hex HMAC-SHA256 of the raw body.
    /// `idempotent`: retried once on a keep-alive socket the node closed meanwhile (a repeated notify is answered as the first).
    func notify(_ body: String, secret: String, idempotent: Bool = false) throws -> (status: Int, json: JSON?, text: String) {
        let sig = Crypto.hex(Crypto.hmacSHA256(key: Array(secret.utf8), message: Array(body.utf8)))
        return try call("POST", "/api/v1/payments/notify", body, headers: [("X-Signature", sig), ("Content-Type", "application/json")],
                        idempotent: idempotent)
    }

    /// A payment for `order` by `payer`, then its signed success notify: nil when its outcome is paid, else why not.
    /// `idempotent`: both calls retried once on a keep-alive socket the node closed meanwhile
    /// (a payment made twice is harmless: only the one notified is paid).
    func pay(order: String, payer: String, secret: String, tradeNo: String, idempotent: Bool = false) throws -> String? {
        let pay = try call("POST", "/api/v1/orders/\(order)/payments", #"{"payer":"\#(payer)"}"#, idempotent: idempotent)
        guard pay.status == 201, let pj = pay.json?["payment"], let pid = pj["id"]?.stringValue,
              let amount = pj["amount"]?.intValue, let currency = pj["currency"]?.stringValue else {
            return "payment for \(order): HTTP \(pay.status) \(pay.text)"
        }
        let body = #"{"payment":"\#(pid)","order":"\#(order)","amount":\#(amount),"currency":"\#(currency)","status":"success","trade_no":"\#(tradeNo)-\#(pid)"}"#
        let r = try notify(body, secret: secret, idempotent: idempotent)
        guard r.status == 200 else { return "notify for \(order): HTTP \(r.status) \(r.text)" }
        // 200 for every outcome: only `paid` (or its repeat after a retried call) is a payment.
        switch r.json?["outcome"]?.stringValue {
        case "paid", "duplicate": return nil
        case "refund_required": return "notify for \(order): refund_required (paid after the order expired: the generator was too slow)"
        case let other: return "notify for \(order): outcome \(other ?? "?")"
        }
    }

    func createProduct(id: String, price: Int, title: String) throws {
        let body = #"{"id":"\#(id)","merchant":"loadtest","title":"\#(title)","price":\#(price),"currency":"CNY"}"#
        let r = try call("POST", "/api/v1/products", body, idempotent: true)
        guard r.status == 201 else { throw SpawnError("creating product \(id): HTTP \(r.status) \(r.text)") }
    }

    func product(_ id: String) throws -> JSON {
        let r = try call("GET", "/api/v1/products/\(id)", idempotent: true)
        guard r.status == 200, let j = r.json else { throw SpawnError("GET product \(id): HTTP \(r.status) \(r.text)") }
        return j
    }

    func disconnect() { conn.disconnect() }
}

/// Settings of spawned nodes that the scenarios need to know but `Cluster` keeps to
/// itself: the payments secret (set here through `--node-env`) and Redis.
enum ClusterSecrets {
    /// Options with `GATEWAY_PAYMENTS_SECRET` fixed, and that secret.
    static func withPaymentsSecret(_ options: ClusterOptions, external: String?) throws -> (ClusterOptions, String) {
        if options.external {
            guard let external else { throw ValidationError("--url needs --payments-secret (the nodes' payments.secret)") }
            return (options, external)
        }
        if let given = options.nodeEnv.last(where: { $0.hasPrefix("GATEWAY_PAYMENTS_SECRET=") }) {
            return (options, String(given.dropFirst("GATEWAY_PAYMENTS_SECRET=".count)))
        }
        var o = options
        let secret = Machine.randomHex(bytes: 16)
        o.nodeEnv.append("GATEWAY_PAYMENTS_SECRET=\(secret)")
        return (o, secret)
    }

    /// The spawned Redis, from the `cluster.json` the Cluster writes.
    static func redisURL(logDir: String) -> String? {
        guard let data = FileManager.default.contents(atPath: "\(logDir)/cluster.json"),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return obj["redis"] as? String
    }
}

/// A spawned node's log, read from where the last call stopped.
final class NodeLogTail {
    let path: String
    private var offset: UInt64 = 0

    init(logDir: String, node: String) {
        path = "\(logDir)/node-\(node).log"
        offset = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
    }

    func newLines() -> [String] {
        guard let h = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? h.close() }
        try? h.seek(toOffset: offset)
        let data = h.readDataToEndOfFile()
        guard let lastNL = data.lastIndex(of: 0x0A) else { return [] }
        offset += UInt64(lastNL - data.startIndex + 1)
        return String(decoding: data[data.startIndex...lastNL], as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

/// `perf record -g` on one process for a phase of a run; the report goes beside the logs.
final class PerfRecorder {
    private let child: ChildProcess
    let dataPath: String
    let reportPath: String

    init?(pid: pid_t, logDir: String, name: String, progress: Progress) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/perf") else {
            progress.note("perf: /usr/bin/perf not found; not profiling")
            return nil
        }
        dataPath = "\(logDir)/perf-\(name).data"
        reportPath = "\(logDir)/perf-\(name).txt"
        guard let c = try? ChildProcess.spawn("/usr/bin/perf", ["record", "-g", "-F", "999", "-p", String(pid), "-o", dataPath],
                                              name: "perf", kind: .other, stderr: .file("\(logDir)/perf-\(name).log")) else {
            return nil
        }
        child = c
        usleep(300_000)   // perf needs a moment to attach
    }

    /// Stops recording and writes the flat profile (self time, no children) as text.
    func stop() -> String? {
        child.signal(SIGINT)
        _ = child.waitExit(timeout: 20)
        guard let rep = try? ChildProcess.spawn("/usr/bin/perf", ["report", "-i", dataPath, "--stdio", "--no-children",
                                                                  "--percent-limit", "0.5", "-g", "none"],
                                                name: "perf report", kind: .other, stdout: .file(reportPath),
                                                stderr: .null) else { return nil }
        _ = rep.waitExit(timeout: 120)
        return reportPath
    }

    /// The top `n` symbols of the flat profile.
    static func top(_ reportPath: String, _ n: Int = 8) -> [String] {
        guard let text = try? String(contentsOfFile: reportPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("%") }.prefix(n)
            .map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
    }
}
