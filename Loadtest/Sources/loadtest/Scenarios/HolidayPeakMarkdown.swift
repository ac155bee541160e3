import Foundation

/// The holiday-peak report as a page people read: verdict lines against the targets,
/// a table per kind of push, each part of the evening, the chart and the run.
extension HolidayPeakResults {
    static func markdown(_ report: HolidayPeakReport, chartFile: String?) -> String? { report.markdown(chartFile: chartFile) }
    static func chart(_ report: HolidayPeakReport) -> (title: String, panels: [ChartPanel], events: [ChartEvent])? { report.chart() }
}

extension ScenarioReport where Results == HolidayPeakResults {
    func markdown(chartFile: String?) -> String {
        let p = parameters
        var out = "# Holiday peak: \(Fmt.int(p.browsers)) browsers, \(p.durationSeconds) s peak, \(p.nodes) node(s)\n\n"
        out += "**Verdict:** \(verdict)\n\n"
        out += "Targets (p99 < \(Fmt.num(p.p99ObjectiveMs, 0)) ms per kind of push, nothing lost or duplicated):\n\n"
        out += checks.map { line -> String in
            let ok = line.hasPrefix("ok")
            return "- \(ok ? "✅" : "❌") " + line.dropFirst(8)
        }.joined(separator: "\n") + "\n\n"
        if !limits.isEmpty { out += "Limits:\n\n" + limits.map { "- \($0)" }.joined(separator: "\n") + "\n\n" }
        if let chartFile { out += "![latency (p50, p99 per second) and pushes per second](\(chartFile))\n\n" }

        out += "## Pushes per kind\n\n"
        out += "Latency runs from the action that caused the push (the HTTP request, the `gift.claim`, the PATCH, the restock upload, or the `t` stamped in a group message) to its receipt on the browser's socket. Pushes replayed by `since` recovery count as received but have no latency.\n\n"
        var rows: [[String]] = self.pushes.sorted { $0.key < $1.key }.map { kind, k in
            let l = k.latency
            return ["`\(kind)`", Fmt.int(k.expected), Fmt.int(k.received), Fmt.int(k.lost), Fmt.int(k.duplicates), Fmt.int(k.unexpected),
                    Fmt.int(k.recovered), l.map { MD.ms($0.p50Ms) } ?? "-", l.map { MD.ms($0.p95Ms) } ?? "-",
                    l.map { MD.ms($0.p99Ms) } ?? "-", l.map { MD.ms($0.maxMs) } ?? "-"]
        }
        let t = self.totals
        rows.append(["**all**", Fmt.int(t.expected), Fmt.int(t.received), Fmt.int(t.lost), Fmt.int(t.duplicates), Fmt.int(t.unexpected), "",
                     t.latency.map { MD.ms($0.p50Ms) } ?? "-", t.latency.map { MD.ms($0.p95Ms) } ?? "-",
                     t.latency.map { MD.ms($0.p99Ms) } ?? "-", t.latency.map { MD.ms($0.maxMs) } ?? "-"])
        out += MD.table(["kind", "expected", "received", "lost", "dup", "unexpected", "recovered", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows) + "\n"
        out += "Offsets skipped or out of order: \(t.outOfOrder) (personal channels \(self.browsers.personalGaps), groups \(self.groups.outOfOrder)); errors: \(t.errors); pushes received in all: \(Fmt.int(t.pushesReceived)).\n\n"

        if !self.latencyByMoment.isEmpty {
            out += "## Latency by moment\n\nThe same pushes, by what the run was doing when they arrived: steady state apart from the bursts.\n\n"
            out += MD.latencyTable(self.latencyByMoment.sorted { $0.key < $1.key }.map { (String($0.key.dropFirst(2)), $0.value) }, firstColumn: "moment") + "\n"
            if !self.fanoutByMoment.isEmpty {
                out += "Fan-out half only: from the push's publication (`ts`, stamped by Redis when it is stored, 1 ms resolution) to its receipt (pub/sub, the node's loop, the socket, the load generator):\n\n"
                out += MD.latencyTable(self.fanoutByMoment.sorted { $0.key < $1.key }.map { (String($0.key.dropFirst(2)), $0.value) }, firstColumn: "moment") + "\n"
            }
        }
        out += "## The parts of the evening\n\n"
        let b = self.browsers
        out += "**Browsers.** \(Fmt.int(b.connected)) of \(Fmt.int(b.target)) connected in \(Fmt.num(b.rampSeconds, 1)) s at \(Fmt.num(p.connectRate, 0))/s (\(b.failed) failed), held to the end (\(Fmt.int(b.onlineAtEnd)) online then); \(b.drops) unplanned drops, each back with `since`.\n\n"
        let g = self.gifts
        out += "**Gift rush.** \(g.ordered) gift orders paid by signed notify (\(g.paid) paid); \(g.received) `gift.received` pushes; \(g.claimed) claims over WebSocket, \(g.claimsWithOneKey) with exactly one key; read back: \(g.readBackDelivered) delivered to the named friend; keys seen twice: \(g.keysSeenTwice).\n\n"
        let f = self.friendPay
        out += "**Friend-pay.** \(f.requested) requests, \(f.paid) paid by the friend on `friendpay.requested`; \(f.secondPayments) paid by a second friend too, \(f.refundsReceived)/\(f.refundsExpected) of those owed back (`payment.refund_required`); read back: \(f.readBackOK) paid exactly once, by the first friend.\n\n"
        let gr = self.groups
        out += "**Group chatter.** \(gr.subscribed)/\(gr.members) members in \(gr.groups) groups; \(gr.messagesAccepted) of \(gr.messagesSent) messages accepted (\(gr.rateLimited) rate limited, \(gr.skippedSenderOffline) skipped while the sender was away); \(Fmt.int(gr.delivered)) of \(Fmt.int(gr.expectedDeliveries)) deliveries checked by offset on every member: \(gr.lost) lost, \(gr.duplicates) duplicated, \(gr.outOfOrder) out of order.\n\n"
        let d = self.priceDrop
        out += "**Flash price drop.** \(d.oldPrice) → \(d.newPrice) with \(d.connectedWatchers) connected and \(d.offlineWatchers) offline watchers; the PATCH took \(Fmt.num(d.patchMs, 1)) ms; \(d.liveAlerts) live alerts, the last \(d.lastLiveAlertMs.map { Fmt.num($0, 1) + " ms" } ?? "-") after the PATCH; \(d.offlineChecked) offline watchers came back with `since`; missing \(d.missing), duplicated \(d.duplicates).\n\n"
        if let rs = self.restock { out += "**Restock rush.** " + rs.paragraph + "\n\n" }
        if let fs = self.flashSale {
            out += "**Flash sale.** \(Fmt.int(p.saleBuyers)) buyers in worker processes on one sale of \(p.saleUnits) units (per_user 1): "
                + FlashSaleRun.headline(fs, units: p.saleUnits) + "; \(fs.resale.unpaidOrders) winners never paid, their orders expired after \(p.salePaySeconds) s and \(fs.resale.resold) units were resold; \(fs.final.deliveredOrders) orders delivered, every buyer's last `remaining` 0 on \(Fmt.int(fs.final.clientsRemainingZero)).\n\n"
        }
        let s = self.storm
        out += "**Reconnect storm.** \(s.victims) browsers dropped without a close frame for \(Fmt.num(s.downSeconds, 1)) s, then came back at once with `since` (all back in \(s.backInSeconds.map { Fmt.num($0, 2) + " s" } ?? "-")); \(s.reconnected) reconnects in the run, \(s.notRecovered) not recovered; \(s.recoveredPushes) pushes arrived through recovery.\n\n"

        if !self.replies.isEmpty {
            out += "## Command replies over WebSocket\n\n" + MD.latencyTable(self.replies.sorted { $0.key < $1.key }.map { ("`\($0.key)`", $0.value) }, firstColumn: "command")
            if let c = b.connectLatency, c.count > 0 { out += MD.latencyTable([("connect (socket + `connect` reply)", c)], firstColumn: "step").split(separator: "\n").dropFirst(2).joined(separator: "\n") + "\n" }
            out += "\n"
        }
        if !self.cpuDuringPeak.isEmpty {
            out += "## CPU during the peak\n\n"
            let sched = Dictionary(self.schedDuringPeak.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            out += MD.table(["process", "% of one core", "waiting for a core, % of the peak", "worst thread waiting", "wait per wake-up ms"],
                            self.cpuDuringPeak.map { c in
                                let s = sched[c.name]
                                return [c.name, Fmt.num(c.percentOfOneCore, 0), s.map { Fmt.num($0.waitPercent, 1) } ?? "", s.map { Fmt.num($0.worstThreadWaitPercent, 1) } ?? "",
                                        s.map { Fmt.num($0.worstThreadWaitPerSliceMs, 2) } ?? ""]
                            }) + "\n"
        }
        let problems = self.errors.merging(self.httpErrors) { $0 + $1 }
        if !problems.isEmpty || !self.missingSamples.isEmpty || !b.failures.isEmpty {
            out += "## Errors\n\n"
            out += MD.table(["count", "what"], (problems.merging(b.failures) { $0 + $1 }).sorted { $0.value > $1.value }.prefix(20).map { [Fmt.int($0.value), $0.key] }, rightAlignFrom: 9)
            if !self.missingSamples.isEmpty { out += "\nSome missing pushes (user, kind, subject):\n\n" + self.missingSamples.map { "- `\($0)`" }.joined(separator: "\n") + "\n" }
            out += "\n"
        }
        out += "## Parameters\n\n" + MD.table(["parameter", "value"], [
            ["browsers", Fmt.int(p.browsers)], ["connect rate", "\(Fmt.num(p.connectRate, 0))/s"], ["peak", "\(p.durationSeconds) s"],
            ["gifts", Fmt.int(p.gifts)], ["friend-pay requests", "\(Fmt.int(p.friendpays)) (second payer on \(Fmt.num(p.doublePay * 100, 0))%)"],
            ["groups", "\(p.groups) with \(p.groupMembers) members, \(Fmt.num(p.chatterRate, 0)) messages/s"],
            ["watchers", "\(p.watchersConnected) connected + \(p.watchersOffline) offline, drop at \(Fmt.num(p.dropAtSeconds, 1)) s into the peak"],
            ["restock", p.restockWatchers == 0 ? "none" : "\(Fmt.int(p.restockWatchers)) watchers, \(Fmt.int(p.restockKeys)) keys at \(Fmt.num(p.restockAtSeconds, 1)) s into the peak, hold \(p.restockHoldSeconds) s, \(Fmt.num(p.restockBuyShare * 100, 0))% of holders buy, \(p.restockSnipers) snipers"],
            ["storm", "\(Fmt.num(p.stormShare * 100, 0))% of browsers at \(Fmt.num(p.stormAtSeconds, 1)) s into the peak, away \(Fmt.num(p.stormDownSeconds, 1)) s"],
            ["HTTP workers", "\(p.httpWorkers)"], ["nodes", "\(p.nodes)\(p.external ? " (external)" : " (spawned, one private Redis)")"],
        ], rightAlignFrom: 9) + "\n"
        out += MD.runSection(run)
        return out
    }

    func chart() -> (title: String, panels: [ChartPanel], events: [ChartEvent])? {
        guard timeline.count >= 2 else { return nil }
        let withLatency = timeline.filter { $0.p99Ms > 0 || $0.p50Ms > 0 }
        let latency = ChartPanel(title: "Push latency per second (action to receipt)", unit: "ms", series: [
            ChartSeries(name: "p50", points: withLatency.map { ($0.t, $0.p50Ms) }, color: "#1f77b4"),
            ChartSeries(name: "p99", points: withLatency.map { ($0.t, $0.p99Ms) }, color: "#d62728"),
            ChartSeries(name: "objective", points: [(0, parameters.p99ObjectiveMs), (timeline.last!.t, parameters.p99ObjectiveMs)], color: "#999999", dashed: true),
        ])
        let throughput = ChartPanel(title: "Throughput", unit: "per second", series: [
            ChartSeries(name: "pushes/s", points: timeline.map { ($0.t, Double($0.pushesPerSecond)) }, color: "#2ca02c"),
            ChartSeries(name: "HTTP calls/s", points: timeline.map { ($0.t, Double($0.httpPerSecond)) }, color: "#ff7f0e"),
        ])
        let online = ChartPanel(title: "Browsers online", unit: "connections", series: [
            ChartSeries(name: "online", points: timeline.map { ($0.t, Double($0.online)) }, color: "#9467bd"),
        ])
        return ("loadtest holiday-peak: \(Fmt.int(parameters.browsers)) browsers, \(parameters.nodes) node(s)", [latency, throughput, online], self.events)
    }
}

extension HolidayPeakResults.Restock {
    private func ms(_ v: Double?) -> String { v.map { Fmt.num($0, 1) + " ms" } ?? "-" }
    private func latency(_ l: LatencySummary?) -> String { l.map { "p50 \(MD.ms($0.p50Ms)) / p99 \(MD.ms($0.p99Ms)) ms" } ?? "-" }

    /// The summary's line.
    var line: String {
        "\(inLine)/\(watchers) in line (\(extraConnections) extra connections, \(Fmt.num(watchSeconds, 1)) s); upload of \(keys) keys \(ms(uploadMs))"
            + " (script \(slowlogMaxMs.map { $0 > 0 ? Fmt.num($0, 2) + " ms" : "under 0.5 ms" } ?? "-")); holds \(holdsAnswered.map(String.init) ?? "-")/\(expectedHolds), told \(holdPushes), out of order \(holdersOutOfOrder);"
            + " holders \(latency(holderLatency)), rest \(latency(restLatency)), last told \(ms(lastToldMs));"
            + " holder orders \(holderDeliveredInTime)/\(holderPaidInTime) delivered in time (\(holderPaidLate) late),"
            + " non-holders \(sniperDeliveredBeforeUntil)/\(sniperPaidBeforeUntil) got a key before until; stock after \(stockAfter.map(String.init) ?? "-") held \(heldAfter.map(String.init) ?? "-")"
    }

    /// The report page's paragraph: what happened and the figures the issue asks for.
    var paragraph: String {
        var out = "`\(product)` sold out; \(Fmt.int(inLine)) of \(Fmt.int(watchers)) watchers in its restock line (\(Fmt.int(extraConnections)) of them extra connections beyond the browsers), each `watch` sent after the previous reply, alternating nodes, in \(Fmt.num(watchSeconds, 1)) s"
        if watchesIgnored > 0 { out += " (\(watchesIgnored) watches answered without `restock:true`: the gateway has no restock watches)" }
        out += ". One upload of \(Fmt.int(keys)) keys took \(ms(uploadMs))"
        if let slowlogMaxMs { out += " (longest Redis command on the product, the upload script: " + (slowlogMaxMs > 0 ? "\(Fmt.num(slowlogMaxMs, 2)) ms)" : "under 0.5 ms)") }
        out += " and answered holds \(holdsAnswered.map(String.init) ?? "-"), stock \(stockAnswered.map(String.init) ?? "-"). "
        out += "\(holdPushes) watchers were told with a hold (expected the first \(expectedHolds) of the line: \(holdersOutOfOrder) later ones held, \(holdersMissing) missed); "
        out += "`product.restock` to holders \(latency(holderLatency)), to the rest \(latency(restLatency)); the last holder was told \(ms(lastHolderToldMs)) and the last watcher \(ms(lastToldMs)) after the upload went out. "
        out += "Holders' orders: \(holderOrders), \(holderDeliveredInTime) of the \(holderPaidInTime) paid within the hold delivered with one key (\(holderPaidLate) paid around or after `until`, not judged)"
        if let holderDeliveredPerSecond { out += ", \(Fmt.num(holderDeliveredPerSecond, 0)) delivered/s" }
        out += ". Non-holders: \(sniperOrders) orders, \(sniperDeliveredBeforeUntil) of the \(sniperPaidBeforeUntil) paid before `until` got a key, \(sniperDeliveredLater) after. "
        out += "Keys sold \(keysGiven), twice \(keysTwice), not from the upload \(keysForeign). After `until`: held \(heldAfter.map(String.init) ?? "-"), stock \(stockAfter.map(String.init) ?? "-") (expected \(expectedStockAfter.map(String.init) ?? "-"))."
        if !problems.isEmpty { out += "\n\n" + problems.map { "- \($0)" }.joined(separator: "\n") }
        return out
    }
}
