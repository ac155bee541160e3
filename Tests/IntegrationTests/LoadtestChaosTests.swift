import Foundation
import XCTest

/// A small `loadtest chaos` run: the holiday peak on 2 nodes while a node is SIGKILLed
/// and restarted, Redis loses its pub/sub and normal clients, sleeps (`DEBUG SLEEP`), is
/// shut down (`SHUTDOWN NOSAVE`) and killed. Every check line of the scenario's verdict
/// must be `ok`: nothing lost, doubled or out of order; every key once; timers on time
/// (also on each node alone, after `CLIENT KILL`s that hit in-flight expiries); descriptors
/// and CPU back to idle. No timing objective is asserted beyond the timers' (5 s slack).
final class LoadtestChaosTests: XCTestCase {
    func testSmallChaosRunKeepsEveryPushKeyAndTimer() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loadtest-chaos-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try LoadtestRun([
            "chaos", "--browsers", "100", "--connect-rate", "200", "--duration", "14", "--gifts", "20", "--friendpays", "15",
            "--double-pay", "0.4", "--groups", "2", "--group-members", "40", "--chatter-rate", "10", "--watchers", "40",
            "--drain", "10", "--http-workers", "4", "--order-ttl", "3", "--timer-probes", "2",
        ], scenario: "chaos", in: dir, timeout: 150)
        let report = run.report, name = run.reportName, tail = run.output
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertNotNil(files.first { $0.hasPrefix("chaos-") && $0.hasSuffix(".md") }, "Markdown beside the JSON: \(files)")

        // Every fault was injected, under real load.
        let faults = try XCTUnwrap(report["faults"] as? [[String: Any]])
        XCTAssertEqual(faults.map { $0["fault"] as? String ?? "?" },
                       ["node-kill", "pubsub-kill", "normal-kill", "debug-sleep", "redis-shutdown", "redis-kill"])
        let peak = try XCTUnwrap(report["peak"] as? [String: Any])
        let totals = try XCTUnwrap(peak["totals"] as? [String: Any])
        XCTAssertGreaterThan((totals["expected"] as? NSNumber)?.intValue ?? 0, 500, "\(totals)")
        let timers = try XCTUnwrap(report["timers"] as? [String: Any])
        XCTAssertGreaterThan((timers["probes"] as? NSNumber)?.intValue ?? 0, 10, "\(timers)")
        XCTAssertEqual((timers["perNode"] as? [Any])?.count, 2, "each node's timers checked alone: \(timers)")

        // Each of the scenario's checks, one failure per missed line, with the evidence.
        let checks = try XCTUnwrap(report["checks"] as? [String])
        XCTAssertFalse(checks.isEmpty)
        for line in checks where !line.hasPrefix("ok") {
            XCTFail("chaos: \(line.dropFirst(8))")
        }
        if checks.contains(where: { !$0.hasPrefix("ok") }) {
            let missing = (peak["missingSamples"] as? [String] ?? []).prefix(5).joined(separator: "; ")
            print("chaos report \(name): errors \(peak["errors"] ?? "") http \(peak["httpErrors"] ?? ""); missing: \(missing)\n\(tail)")
        }
    }
}
