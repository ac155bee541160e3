import Foundation
import XCTest

/// Small runs of the built `loadtest` binary against nodes it spawns itself: the
/// benchmarks' own checks must find nothing lost, duplicated or out of order. For
/// correctness only; no timing is asserted (the machine is shared).
final class LoadtestRunTests: XCTestCase {
    private var reportDir: URL!

    override func setUpWithError() throws {
        reportDir = FileManager.default.temporaryDirectory.appendingPathComponent("loadtest-run-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: reportDir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        if let reportDir { try? FileManager.default.removeItem(at: reportDir) }
    }

    func testSmallFanoutLosesNothing() throws {
        let report = try runLoadtest(["fanout", "--subscribers", "60", "--channels", "2", "--rate", "40", "--duration", "3",
                                      "--drain", "10"], scenario: "fanout", timeout: 60)
        let subscribers = try XCTUnwrap(report["subscribers"] as? [String: Any])
        let publications = try XCTUnwrap(report["publications"] as? [String: Any])
        let deliveries = try XCTUnwrap(report["deliveries"] as? [String: Any])
        XCTAssertEqual(int(subscribers["subscribed"]), 60, "\(subscribers)")
        XCTAssertEqual(int(subscribers["failed"]), 0)
        XCTAssertEqual(int(publications["ok"]), 120, "every publication accepted: \(publications)")
        XCTAssertEqual(int(publications["errors"]), 0)
        // 60 subscribers over 2 channels, 120 publications over 2 channels: 30 x 60 per channel.
        XCTAssertEqual(int(deliveries["expected"]), 3600)
        XCTAssertEqual(int(deliveries["received"]), 3600, "\(deliveries)")
        XCTAssertEqual(int(deliveries["lost"]), 0)
        XCTAssertEqual(int(deliveries["duplicates"]), 0)
        XCTAssertEqual(int(deliveries["outOfOrder"]), 0)
        XCTAssertEqual(int(deliveries["unexpected"]), 0)
        try assertMarkdownBeside("fanout")
    }

    func testSmallHolidayPeakLosesNothing() throws {
        let report = try runLoadtest([
            "holiday-peak", "--browsers", "100", "--connect-rate", "200", "--duration", "10", "--gifts", "20", "--friendpays", "15",
            "--double-pay", "0.4", "--groups", "2", "--group-members", "40", "--chatter-rate", "10", "--watchers", "40",
            "--storm-share", "0.3", "--storm-at", "0.3", "--storm-down", "2", "--drain", "15", "--http-workers", "4",
            "--restock-watchers", "0", "--sale-buyers", "100", "--sale-units", "10", "--sale-pay-s", "4",
        ], scenario: "holiday-peak", timeout: 120)
        let totals = try XCTUnwrap(report["totals"] as? [String: Any])
        XCTAssertGreaterThan(int(totals["expected"]), 500, "\(totals)")
        XCTAssertEqual(int(totals["received"]), int(totals["expected"]), "\(totals)")
        XCTAssertEqual(int(totals["lost"]), 0, "missing: \(report["missingSamples"] ?? "")")
        XCTAssertEqual(int(totals["duplicates"]), 0)
        XCTAssertEqual(int(totals["outOfOrder"]), 0)
        XCTAssertEqual(int(totals["unexpected"]), 0)
        XCTAssertEqual(int(totals["errors"]), 0, "errors: \(report["errors"] ?? "") http: \(report["httpErrors"] ?? "")")

        // Every part ran and was checked.
        let pushes = try XCTUnwrap(report["pushes"] as? [String: [String: Any]])
        for kind in ["order.status (set-up)", "order.status", "gift.created", "gift.received", "gift.claimed", "friendpay.requested", "friendpay.paid",
                     "friendpay.receipt", "payment.refund_required", "group.message", "price.drop"] {
            let k = try XCTUnwrap(pushes[kind], "no \(kind) pushes in \(pushes.keys.sorted())")
            XCTAssertGreaterThan(int(k["expected"]), 0, kind)
            XCTAssertEqual(int(k["received"]), int(k["expected"]), kind)
            XCTAssertEqual(int(k["lost"]), 0, kind)
            XCTAssertEqual(int(k["duplicates"]), 0, kind)
        }
        let gifts = try XCTUnwrap(report["gifts"] as? [String: Any])
        XCTAssertEqual(int(gifts["paid"]), 20, "\(gifts)")
        XCTAssertEqual(int(gifts["claimed"]), 20)
        XCTAssertEqual(int(gifts["claimsWithOneKey"]), 20)
        XCTAssertEqual(int(gifts["readBackDelivered"]), 20)
        XCTAssertEqual(int(gifts["keysSeenTwice"]), 0)
        let friendPay = try XCTUnwrap(report["friendPay"] as? [String: Any])
        XCTAssertEqual(int(friendPay["paid"]), 15, "\(friendPay)")
        XCTAssertEqual(int(friendPay["readBackOK"]), 15)
        XCTAssertGreaterThan(int(friendPay["refundsExpected"]), 0)
        XCTAssertEqual(int(friendPay["refundsReceived"]), int(friendPay["refundsExpected"]))
        let groups = try XCTUnwrap(report["groups"] as? [String: Any])
        XCTAssertEqual(int(groups["subscribed"]), 40, "\(groups)")
        XCTAssertGreaterThan(int(groups["delivered"]), 0)
        XCTAssertEqual(int(groups["lost"]), 0)
        let drop = try XCTUnwrap(report["priceDrop"] as? [String: Any])
        XCTAssertGreaterThan(int(drop["liveAlerts"]), 0, "\(drop)")
        XCTAssertEqual(int(drop["offlineChecked"]), 20)
        let storm = try XCTUnwrap(report["storm"] as? [String: Any])
        XCTAssertGreaterThan(int(storm["victims"]), 0, "\(storm)")
        XCTAssertGreaterThanOrEqual(int(storm["reconnected"]), int(storm["victims"]))
        XCTAssertEqual(int(storm["notRecovered"]), 0)
        // The flash sale beside the peak: 100 buyers, 10 units, 1 unpaid and resold.
        let sale = try XCTUnwrap(report["flashSale"] as? [String: Any], "\(report.keys.sorted())")
        XCTAssertEqual(int((sale["rush"] as? [String: Any])?["firstWaveWon"]), 10, "\(sale)")
        XCTAssertEqual(int((sale["resale"] as? [String: Any])?["resold"]), 1)
        XCTAssertEqual(int((sale["final"] as? [String: Any])?["deliveredOrders"]), 10)
        let saleChecks = try XCTUnwrap(report["flashSaleChecks"] as? [String])
        XCTAssertEqual(saleChecks.count, 13)
        XCTAssertEqual(saleChecks.filter { !$0.hasPrefix("ok") }, [])
        try assertMarkdownBeside("holiday-peak")
    }

    /// The restock rush on a small scale (issue 14): 300 restock watchers (200 beyond the browsers),
    /// 30 keys: exactly 30 holds, to the first 30 in watch order; holders who pay within the hold
    /// delivered; no key to anyone else while held; every watcher told once; unused holds back.
    /// Skipped on a gateway without restock watches (every watch answered without `restock:true`).
    func testSmallRestockRushHoldsKeysForTheFirstWatchersInOrder() throws {
        let report = try runLoadtest([
            "holiday-peak", "--browsers", "100", "--connect-rate", "300", "--duration", "10", "--gifts", "4", "--friendpays", "4",
            "--groups", "1", "--group-members", "10", "--chatter-rate", "2", "--watchers", "10", "--storm-share", "0", "--drain", "15",
            "--http-workers", "4", "--restock-watchers", "300", "--restock-keys", "30", "--restock-hold-s", "8", "--restock-snipers", "20",
            "--sale-buyers", "0",
        ], scenario: "holiday-peak", timeout: 150)
        let rs = try XCTUnwrap(report["restock"] as? [String: Any], "\(report.keys.sorted())")
        if int(rs["watchesIgnored"]) == 300 { throw XCTSkip("the gateway has no restock watches (answered without restock:true)") }
        XCTAssertEqual(int(rs["inLine"]), 300, "\(rs)")
        XCTAssertEqual(int(rs["expectedHolds"]), 30)
        XCTAssertEqual(int(rs["holdsAnswered"]), 30, "the upload answers the holds given")
        XCTAssertEqual(int(rs["stockAnswered"]), 0)
        XCTAssertEqual(int(rs["holdPushes"]), 30)
        XCTAssertEqual(int(rs["holdersOutOfOrder"]), 0, "\(rs["problems"] ?? "")")
        XCTAssertEqual(int(rs["holdersMissing"]), 0)
        XCTAssertEqual(int(rs["untilValues"]), 1)
        XCTAssertGreaterThan(int(rs["holderPaidInTime"]), 0, "\(rs)")
        XCTAssertEqual(int(rs["holderDeliveredInTime"]), int(rs["holderPaidInTime"]), "\(rs["problems"] ?? "")")
        XCTAssertGreaterThan(int(rs["sniperOrders"]), 0)
        XCTAssertEqual(int(rs["sniperDeliveredBeforeUntil"]), 0, "no held key to a non-holder")
        XCTAssertEqual(int(rs["keysTwice"]), 0)
        XCTAssertEqual(int(rs["keysForeign"]), 0)
        XCTAssertEqual(int(rs["heldAfter"]), 0, "every unused hold ended")
        XCTAssertEqual(int(rs["stockAfter"]), int(rs["expectedStockAfter"]), "\(rs)")
        let pushes = try XCTUnwrap(report["pushes"] as? [String: [String: Any]])
        for (kind, n) in [("product.restock (holders)", 30), ("product.restock (rest)", 270)] {
            let k = try XCTUnwrap(pushes[kind], "no \(kind) in \(pushes.keys.sorted())")
            XCTAssertEqual(int(k["expected"]), n, kind)
            XCTAssertEqual(int(k["received"]), n, kind)
            XCTAssertEqual(int(k["duplicates"]), 0, kind)
        }
        XCTAssertNil(pushes["product.restock"], "a product.restock to a user not in line")
        let totals = try XCTUnwrap(report["totals"] as? [String: Any])
        XCTAssertEqual(int(totals["lost"]), 0, "missing: \(report["missingSamples"] ?? "")")
        XCTAssertEqual(int(totals["unexpected"]), 0)
        XCTAssertEqual(int(totals["errors"]), 0, "errors: \(report["errors"] ?? "") http: \(report["httpErrors"] ?? "")")
    }

    /// `orders --webhooks` reads the event log back and holds the receiver's deliveries against
    /// it: two events per paid order, none unknown, none out of order, none badly signed.
    func testSmallOrdersWithWebhooksAccountsForEveryLoggedEvent() throws {
        let report = try runLoadtest(["orders", "--orders", "20", "--concurrency", "4", "--webhooks", "--webhooks-drain", "30"],
                                     scenario: "orders", timeout: 120)
        let hooks = try XCTUnwrap(report["webhooks"] as? [String: Any], "\(report.keys.sorted())")
        XCTAssertEqual(int(hooks["eventsWritten"]), 40, "order.paid + order.delivered for each of 20 orders: \(hooks)")
        XCTAssertEqual(hooks["eventsByType"] as? [String: Int], ["order.paid": 20, "order.delivered": 20])
        XCTAssertNil(hooks["logReadError"])
        XCTAssertEqual(int(hooks["received"]), 40, "every logged event delivered: \(hooks)")
        XCTAssertEqual(int(hooks["missing"]), 0)
        XCTAssertEqual(int(hooks["unexpected"]), 0)
        XCTAssertEqual(int(hooks["outOfOrder"]), 0)
        XCTAssertEqual(int(hooks["signaturesInvalid"]), 0)
        XCTAssertGreaterThanOrEqual(int(hooks["backlogAtEnd"]), 0, "the backlog gauge was read")
        XCTAssertEqual(int(hooks["backlogTenSecondsLater"]), 0, "the backlog drained")
        XCTAssertTrue((hooks["url"] as? String)?.hasPrefix("http://127.0.0.1:") == true)
    }

    /// Issue 17's flash sale on a small scale over 2 nodes: 600 buyers in 2 worker processes wait on
    /// 30 units (per_user 1) and press at `sale.open`; every winner presses once more at once (must be
    /// refused); 3 winners never pay, their orders expire after sales.pay_s (4 s) and those units go
    /// to buyers who lost. Exactly 30 paid orders with one key each, nobody with two, every buyer's
    /// last `remaining` 0, the sale's GET says remaining 0 and sold 30.
    func testSmallFlashSaleSellsEveryUnitOnceAndResellsTheUnpaid() throws {
        let report = try runLoadtest([
            "flash-sale", "--buyers", "600", "--units", "30", "--per-user", "1", "--unpaid", "0.1", "--pay-s", "4", "--lead", "4",
            "--connect-rate", "600", "--workers", "2", "--http-workers", "4", "--wait", "40",
        ], scenario: "flash-sale", timeout: 150)
        let setup = try XCTUnwrap(report["setup"] as? [String: Any], "\(report.keys.sorted())")
        let rush = try XCTUnwrap(report["rush"] as? [String: Any])
        let resale = try XCTUnwrap(report["resale"] as? [String: Any])
        let final = try XCTUnwrap(report["final"] as? [String: Any])
        XCTAssertEqual(int(setup["subscribed"]), 600, "\(setup)")
        XCTAssertGreaterThanOrEqual((setup["subscribedMsBeforeStart"] as? NSNumber)?.doubleValue ?? -1, 0, "every buyer subscribed before starts_at")
        XCTAssertEqual(int(rush["opened"]), 600, "\(rush)")
        XCTAssertEqual(int(rush["firstWaveWon"]), 30)
        let spread = try XCTUnwrap((rush["openSpreadMs"] as? NSNumber)?.doubleValue, "\(rush)")
        let workerSpread = try XCTUnwrap((rush["workerOpenSpreadMaxMs"] as? NSNumber)?.doubleValue, "each worker's own spread: \(rush)")
        XCTAssertLessThanOrEqual(workerSpread, spread, "one worker's spread is within the global one")
        XCTAssertNotNil(rush["soldOutPushFromFirstOpenMs"], "the headline's sold-out figure: \(rush)")
        XCTAssertGreaterThan(int((rush["refusals"] as? [String: Any])?["conflict"]), 0, "losers were told sold out: \(rush)")
        XCTAssertEqual(int(resale["unpaidOrders"]), 3, "\(resale)")
        XCTAssertEqual(int(resale["resold"]), 3)
        XCTAssertEqual(int(resale["paid"]), 30)
        XCTAssertEqual(int(resale["payErrors"]), 0)
        XCTAssertEqual(int(final["deliveredOrders"]), 30, "\(final)")
        XCTAssertEqual(int(final["unpaidCanceled"]), 3)
        XCTAssertEqual(int(final["readErrors"]), 0)
        XCTAssertEqual(int(final["usersWithTwo"]), 0)
        XCTAssertEqual(int(final["secondPresses"]), 600, "every buyer pressed twice on sale.open, before either answer")
        XCTAssertEqual(int(final["twinPresses"]), 30, "1 buyer in 20 pressed from the other node too: \(final)")
        XCTAssertEqual(int(final["openRepeats"]), 0, "\(final)")
        XCTAssertEqual(int(final["beforeOpen"]), 0, "no stock or sold_out before a buyer's sale.open")
        XCTAssertEqual(int(final["secondPressWon"]), 0)
        XCTAssertEqual(int(final["deliveredWithoutOneKey"]), 0)
        XCTAssertEqual(int(final["keysTwice"]), 0)
        XCTAssertEqual(int(final["keysForeign"]), 0)
        XCTAssertEqual(int(final["clientsRemainingZero"]), 600)
        XCTAssertEqual(int(final["pushGaps"]), 0)
        XCTAssertEqual(int(final["saleRemaining"]), 0)
        XCTAssertEqual(int(final["saleSold"]), 30)
        let pushes = try XCTUnwrap(final["pushes"] as? [String: Any])
        XCTAssertEqual(int(pushes["sale.open"]), 600, "\(pushes)")
        XCTAssertGreaterThanOrEqual(int(pushes["sale.sold_out"]), 1200, "sold out once in the rush and again after the resale")
        XCTAssertGreaterThanOrEqual(int(pushes["sale.stock"]), 600, "the returned units were announced")
        let checks = try XCTUnwrap(report["checks"] as? [String])
        XCTAssertEqual(checks.count, 13)
        XCTAssertEqual(checks.filter { !$0.hasPrefix("ok") }, [])
    }

    // MARK: Helpers

    /// Runs `loadtest <args>` into the temp report folder; returns the parsed JSON report.
    private func runLoadtest(_ args: [String], scenario: String, timeout: Double) throws -> [String: Any] {
        try LoadtestRun(args, scenario: scenario, in: reportDir, timeout: timeout).report
    }

    /// The Markdown report and its SVG chart sit beside the JSON, and the page links the chart.
    private func assertMarkdownBeside(_ scenario: String) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: reportDir.path)
        let md = try XCTUnwrap(files.first { $0.hasPrefix("\(scenario)-") && $0.hasSuffix(".md") }, "\(files)")
        let svg = try XCTUnwrap(files.first { $0.hasPrefix("\(scenario)-") && $0.hasSuffix(".svg") }, "\(files)")
        let text = try String(contentsOf: reportDir.appendingPathComponent(md), encoding: .utf8)
        XCTAssertTrue(text.contains("](\(svg))"), "the Markdown links \(svg)")
        XCTAssertTrue(text.contains("p99"), "the Markdown has percentiles")
        let picture = try String(contentsOf: reportDir.appendingPathComponent(svg), encoding: .utf8)
        XCTAssertTrue(picture.hasPrefix("<svg") && picture.contains("<polyline"), "the chart has lines")
    }

    private func int(_ v: Any?) -> Int { (v as? NSNumber)?.intValue ?? -1 }
}

/// One `loadtest` run with its reports in `dir`, stopped with SIGINT (the load tester then
/// stops every process it started) if it runs over `timeout`; an overrun or a non-zero exit
/// is a test failure that shows the end of its output.
struct LoadtestRun {
    let report: [String: Any]
    /// The JSON report's file name, e.g. `chaos-20261201-090856.json`.
    let reportName: String
    /// The last 60 lines the load tester printed.
    let output: String

    init(_ args: [String], scenario: String, in dir: URL, timeout: Double) throws {
        let binary = executable("loadtest"), gateway = executable("gateway")
        guard FileManager.default.isExecutableFile(atPath: binary.path), FileManager.default.isExecutableFile(atPath: gateway.path) else {
            throw TestError("no loadtest or gateway binary beside the tests at \(productsDir.path): swift build --product loadtest --product gateway first")
        }
        let p = Process()
        p.executableURL = binary
        p.arguments = args + ["--report-dir", dir.path, "--gateway", gateway.path]
        let logURL = dir.appendingPathComponent("\(scenario).out")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        p.standardOutput = log
        p.standardError = log
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(100_000) }
        let overran = p.isRunning
        if overran {
            p.interrupt()
            usleep(3_000_000)
            if p.isRunning { p.terminate() }
            p.waitUntilExit()
        }
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        output = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(60).joined(separator: "\n")
        if overran { XCTFail("loadtest \(scenario) ran over \(Int(timeout)) s:\n\(output)") }
        XCTAssertEqual(p.terminationStatus, 0, "loadtest \(scenario) failed:\n\(output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        guard let name = files.first(where: { $0.hasPrefix("\(scenario)-") && $0.hasSuffix(".json") }) else {
            throw TestError("no \(scenario) JSON report in \(dir.path):\n\(output)")
        }
        reportName = name
        report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name))) as? [String: Any])
    }
}
