import Foundation
import GatewayProtocol

/// The phases of one holiday-peak run, in order: `Ramp`, `SetUp`, `Peak`, `Drain`. Each
/// takes what the one before found and hands on what the next needs; the scenario
/// (`HolidayPeakScenario`) owns the counters, the HTTP work and the push handling they share.
enum HolidayPeak {
    /// What every phase of a run shares: the nodes, the browsers, the report being filled
    /// and the once-a-second tick (a timeline point and a progress line).
    final class Run {
        let scenario: HolidayPeakScenario
        let cluster: Cluster
        let progress: Progress
        /// Connected for the whole run.
        let browsers: [HPBrowser]
        /// Watchers that watch, go offline, and come back with `since` after the price drop.
        let offline: [HPBrowser]
        /// Restock watchers beyond the browsers: connect in the ramp, watch, stay to the end.
        let restockExtra: [HPBrowser]
        var report: HolidayPeakReport
        var clock: Timeline
        var cpu: CPUWatch
        /// When the next tick is due.
        private(set) var nextTick: Double

        init(scenario: HolidayPeakScenario, cluster: Cluster, progress: Progress, browsers: [HPBrowser], offline: [HPBrowser],
             restockExtra: [HPBrowser], report: HolidayPeakReport) {
            self.scenario = scenario
            self.cluster = cluster
            self.progress = progress
            self.browsers = browsers
            self.offline = offline
            self.restockExtra = restockExtra
            self.report = report
            clock = Timeline(progress: progress)
            cpu = CPUWatch(cluster: cluster, workers: [])
            nextTick = Clock.now() + 1
        }

        var n: Int { browsers.count }

        /// The restock line's candidates in the order their watches go out: the first browsers, then the extra connections.
        var restockCandidates: [HPBrowser] {
            Array(browsers.prefix(scenario.cmd.restockWatchers)) + restockExtra
        }

        /// Connections online that are not browsers (the extra restock watchers). Fleet lock not held.
        var extraOnline: Int { scenario.fleet.lock.withLock { restockExtra.filter { $0.state == .online }.count } }

        /// True once a second (then the caller ticks the timeline and prints its line).
        func tickDue() -> Bool {
            guard Clock.now() >= nextTick else { return false }
            nextTick += 1
            return true
        }
    }

    /// 1. Browsers connect at the connect rate and stay; offline watchers connect, watch and leave;
    /// extra restock watchers connect alongside and stay (they watch in the set-up).
    struct Ramp {
        let run: Run

        /// Offline watchers whose watch is done (answered or failed).
        func callAsFunction() throws -> Counter {
            let s = run.scenario, cmd = s.cmd, fleet = s.fleet!, p = run.progress
            let browsers = run.browsers, offline = run.offline, extra = run.restockExtra, n = run.n
            p.note("ramp: \(Fmt.int(n)) browsers at \(Fmt.num(cmd.connectRate, 0))/s over \(run.cluster.endpoints.count) node(s), \(Fmt.int(offline.count)) offline watchers alongside"
                + (extra.isEmpty ? "" : ", and \(Fmt.int(extra.count)) extra restock watchers"))
            let rampStart = Clock.now()
            var opened = 0, openedOffline = 0, openedExtra = 0
            let offlineWatchDone = Counter()
            let watchFields = s.watchFields
            for w in offline {
                w.onOnline = { b in
                    // First connect only: watch, then go offline.
                    guard !b.reconnecting else { return }
                    fleet.send(b, "watch", watchFields) { reply in
                        if reply["ok"] == nil { s.watchFailed(reply) }
                        offlineWatchDone.add()
                        DispatchQueue.global().async { fleet.close(b) }
                    }
                }
            }
            let rampDeadline = rampStart + Double(max(n, extra.count)) / cmd.connectRate * 2 + 30
            var nextSettleCheck = 0.0
            while true {
                Children.haltIfInterrupted()
                let due = min(n, Int((Clock.now() - rampStart) * cmd.connectRate) + 1)
                while opened < due {
                    fleet.connect(browsers[opened], since: false, index: opened)
                    opened += 1
                }
                let dueOffline = min(offline.count, Int((Clock.now() - rampStart) * cmd.connectRate) + 1)
                while openedOffline < dueOffline && openedOffline - offlineWatchDone.value < 500 {
                    fleet.connect(offline[openedOffline], since: false, index: openedOffline)
                    openedOffline += 1
                }
                let dueExtra = min(extra.count, Int((Clock.now() - rampStart) * cmd.connectRate) + 1)
                while openedExtra < dueExtra {
                    fleet.connect(extra[openedExtra], since: false, index: openedExtra)
                    openedExtra += 1
                }
                if run.tickDue() {
                    let snapshot = fleet.snapshot
                    run.clock.tick(&run.report, "ramp", snapshot.online, s.ledger, httpCalls: s.takeHTTP(), errors: s.errors.total + s.httpErrors.total)
                    p.line("ramp", "online \(Fmt.int(snapshot.online))/\(Fmt.int(n + extra.count)) failed \(snapshot.failed) | offline watchers \(offlineWatchDone.value)/\(offline.count) | connect \(fleet.connectSummary.line) | " + run.cpu.line())
                }
                if opened == n && openedOffline == offline.count && openedExtra == extra.count && Clock.now() >= nextSettleCheck {
                    nextSettleCheck = Clock.now() + 0.1
                    let settled = fleet.lock.withLock {
                        (browsers + extra).allSatisfy { $0.state == .online || $0.state == .failed }
                            && offline.allSatisfy { $0.state == .closed || $0.state == .failed }
                    }
                    if settled { break }
                }
                if Clock.now() > rampDeadline {
                    p.note("ramp timed out; going on with the browsers online")
                    break
                }
                usleep(2_000)
            }
            run.report.browsers.rampSeconds = Clock.now() - rampStart
            let afterRamp = fleet.snapshot
            let extraOnline = run.extraOnline
            guard afterRamp.online - extraOnline > 0 else { throw SpawnError("no browser connected; see \(run.cluster.logDir)") }
            run.report.browsers.connected = afterRamp.online - extraOnline
            p.note("ramp done in \(Fmt.num(run.report.browsers.rampSeconds, 1)) s: \(Fmt.int(afterRamp.online - extraOnline)) browsers online"
                + (extra.isEmpty ? "" : " (and \(Fmt.int(extraOnline)) extra restock watchers)") + ", \(afterRamp.failed) failed")
            return offlineWatchDone
        }
    }

    /// 2. Connected watchers watch; group members buy and join their group; the restock line forms,
    /// one watch at a time.
    struct SetUp {
        let run: Run
        let offlineWatchDone: Counter

        struct Result {
            let connectedWatchers: [HPBrowser]
            /// Per group, the members that subscribed: the only senders and receivers of chatter.
            let groupMembersByGroup: [[HPBrowser]]
        }

        func callAsFunction() -> Result {
            let s = run.scenario, cmd = s.cmd, fleet = s.fleet!, p = run.progress
            s.ledger.setMoment("1 set-up (members buy at once)")
            let members = Array(run.browsers.prefix(cmd.groupMembers))
            let connectedWatchers = Array(run.browsers.suffix(cmd.connectedWatchers))
            let watched = Counter()
            // The restock line first: its watches go one after another, alongside the rest of the set-up.
            let restockCandidates = s.rush == nil ? [] : run.restockCandidates
            let restockWatched = Counter()
            s.rush?.startWatches(restockCandidates, done: restockWatched)
            for b in connectedWatchers {
                let sent = fleet.command(b, "watch", s.watchFields) { reply in
                    if reply["ok"] == nil { s.watchFailed(reply) }
                    watched.add()
                }
                if !sent { watched.add(); s.watchNotSent() }
            }
            let bought = Counter()
            for (i, b) in members.enumerated() {
                s.jobs.add { shop in s.buyForGroup(shop, b, group: i % cmd.groups, done: bought) }
            }
            // One restock watch a round trip: 17 ms each (p50 13 ms) with debug builds on a busy 2-core machine.
            let setupDeadline = Clock.now() + 60 + Double(members.count) / 20 + Double(restockCandidates.count) / 20
            while (bought.value < members.count || watched.value < connectedWatchers.count || restockWatched.value < restockCandidates.count)
                    && Clock.now() < setupDeadline {
                Children.haltIfInterrupted()
                usleep(100_000)
                s.rush?.nudge()
                if run.tickDue() {
                    run.clock.tick(&run.report, "setup", fleet.snapshot.online, s.ledger, httpCalls: s.takeHTTP(), errors: s.errors.total + s.httpErrors.total)
                    p.line("setup", "members bought \(bought.value)/\(members.count) | watches \(watched.value)/\(connectedWatchers.count)"
                        + (restockCandidates.isEmpty ? "" : " | restock line \(s.rush?.lineLength ?? 0) (\(restockWatched.value)/\(restockCandidates.count) watched)")
                        + " | " + run.cpu.line())
                }
            }
            let subscribed = Counter()
            let subscribeDone = Counter()
            for (i, b) in members.enumerated() {
                let channel = "group:\(s.groupProduct(i % cmd.groups))"
                let sent = fleet.command(b, "subscribe", #""channel":"\#(channel)""#) { reply in
                    if let ok = reply["ok"], let offset = ok["offset"]?.intValue, let epoch = ok["epoch"]?.stringValue {
                        if b.groups[channel] == nil { b.groups[channel] = GroupPosition(start: offset, last: offset, epoch: epoch) }
                        subscribed.add()
                    } else {
                        s.errors.add("subscribe group: " + (reply["error"]?["code"]?.stringValue ?? "?"))
                    }
                    subscribeDone.add()
                }
                if !sent { subscribeDone.add() }
            }
            let subDeadline = Clock.now() + 30
            while subscribeDone.value < members.count && Clock.now() < subDeadline { usleep(20_000) }
            s.groupsJoined(groups: cmd.groups, members: members.count, subscribed: subscribed.value)
            // Only subscribed members count as senders and receivers.
            let groupMembersByGroup: [[HPBrowser]] = fleet.lock.withLock {
                (0..<cmd.groups).map { k in
                    members.enumerated().filter { $0.offset % cmd.groups == k }.map(\.element).filter { !$0.groups.isEmpty }
                }
            }
            p.note("set-up: \(subscribed.value)/\(members.count) members in \(cmd.groups) groups, \(watched.value) connected + \(offlineWatchDone.value) offline watches"
                + (s.rush.map { "; restock line of \($0.lineLength)" } ?? "") + "; peak of \(cmd.duration) s begins")
            return Result(connectedWatchers: connectedWatchers, groupMembersByGroup: groupMembersByGroup)
        }
    }

    /// 3. The peak: gift rush and friend-pay over the first 80%, group chatter, the reconnect
    /// storm, the restock upload, the flash price drop and the offline watchers' return.
    struct Peak {
        let run: Run
        let setUp: SetUp.Result

        /// What the drain and the report need from the peak.
        final class Result {
            var victims: [HPBrowser] = []
            var stormBackDone: Double?
            var offlineCheckStarted = false
            var offlineNext = 0
            let offlineChecked = Counter()
            var giftOrders: [HPOrder] = []
            var fpOrders: [HPOrder] = []
        }

        func callAsFunction() -> Result {
            let s = run.scenario, cmd = s.cmd, fleet = s.fleet!, jobs = s.jobs!, ledger = s.ledger, p = run.progress, c = run.cluster
            let browsers = run.browsers, offline = run.offline, n = run.n
            let peak = Double(cmd.duration)
            let out = Result()
            var procs: [(String, pid_t)] = c.endpoints.compactMap { ep in ep.pid.map { (ep.name, $0) } }
            if let r = c.redisPid { procs.append(("redis", r)) }
            procs.append(("loadtest (browsers, HTTP)", getpid()))
            let victimIndexes = cmd.stormShare > 0 ? (0..<n).filter { Double(($0 * 7919) % 1000) < cmd.stormShare * 1000 } : []
            var inStorm = false
            let senders = setUp.groupMembersByGroup
            var senderCursor = Array(repeating: 0, count: cmd.groups)
            out.giftOrders = (0..<cmd.gifts).map { g in HPOrder(n: g, buyer: browsers[(2 * g) % n], friend: browsers[(2 * g + 1) % n]) }
            out.fpOrders = (0..<cmd.friendpays).map { f -> HPOrder in
                let base = 3 * f + 1
                let double = cmd.doublePay > 0 && Double((f * 7) % 100) < cmd.doublePay * 100
                return HPOrder(n: f, buyer: browsers[base % n], friend: browsers[(base + 1) % n], second: double ? browsers[(base + 2) % n] : nil)
            }
            let giftOrders = out.giftOrders, fpOrders = out.fpOrders
            let spread = peak * 0.8
            var nextGift = 0, nextFP = 0, messageSeq = 0
            var stormDownAt: Double?, stormBackAt: Double?
            var dropDone = false
            var restockDone = s.rush == nil
            var offlineReturnDone = false
            let offlineChecked = out.offlineChecked
            let connectedWatchers = setUp.connectedWatchers
            let peakStart = Clock.now()
            let peakEnd = peakStart + peak
            let steady = "2 peak, steady"
            var burstUntil: Double?
            ledger.setMoment(steady)
            s.chaos?.peakStarted(cluster: c, peakSeconds: peak, progress: p)
            run.report.cpuDuringPeak = CPUSpan.measure(procs) {
              run.report.schedDuringPeak = SchedSpan.measure(procs) {
                while Clock.now() < peakEnd {
                    Children.haltIfInterrupted()
                    let t = Clock.now() - peakStart
                    // Gift rush and friend-pay requests, evenly over the first 80% of the peak.
                    while nextGift < giftOrders.count && Double(nextGift) * spread / Double(giftOrders.count) <= t {
                        let g = giftOrders[nextGift]
                        jobs.add { shop in s.placeGift(shop, g) }
                        nextGift += 1
                    }
                    while nextFP < fpOrders.count && Double(nextFP) * spread / Double(fpOrders.count) <= t {
                        let f = fpOrders[nextFP]
                        jobs.add { shop in s.requestFriendPay(shop, f) }
                        nextFP += 1
                    }
                    // Group chatter.
                    while cmd.chatterRate > 0 && Double(messageSeq) / cmd.chatterRate <= t {
                        let k = messageSeq % cmd.groups
                        messageSeq += 1
                        guard !senders[k].isEmpty else { continue }
                        let sender = senders[k][senderCursor[k] % senders[k].count]
                        senderCursor[k] += 1
                        s.chat(sender, group: "group:\(s.groupProduct(k))")
                    }
                    // Reconnect storm: down at once, back at once with `since`.
                    if stormDownAt == nil && !victimIndexes.isEmpty && t >= cmd.stormAt * peak {
                        stormDownAt = t
                        inStorm = true
                        // Browsers waiting for a reply stay: a lost reply would be a lost claim or message, not the gateway's.
                        out.victims = victimIndexes.map { browsers[$0] }.filter { fleet.drop($0) }
                        run.report.events.append(ChartEvent(t: p.elapsed, label: "storm: \(out.victims.count) drop"))
                        p.note("storm: dropped \(out.victims.count) browsers without a close frame")
                    }
                    if let down = stormDownAt, stormBackAt == nil && t >= down + cmd.stormDown {
                        stormBackAt = t
                        inStorm = false
                        run.report.events.append(ChartEvent(t: p.elapsed, label: "storm: back with since"))
                        let victims = out.victims
                        let away = fleet.lock.withLock { victims.filter { $0.state == .down } }
                        ledger.setMoment("3 peak, storm return (until 1 s after all are back)")
                        for (i, b) in away.enumerated() { fleet.connect(b, since: true, index: i) }
                    }
                    if let back = stormBackAt, out.stormBackDone == nil,
                       fleet.lock.withLock({ out.victims.allSatisfy { $0.state != .down && $0.state != .connecting } }) {
                        out.stormBackDone = t - back
                        burstUntil = Clock.now() + 1
                    }
                    // Restock rush: one upload to the sold-out product; holders and snipers buy on their push.
                    if !restockDone && t >= cmd.restockAt * peak, let rush = s.rush {
                        restockDone = true
                        run.report.events.append(ChartEvent(t: p.elapsed, label: "restock"))
                        ledger.setMoment("4 peak, restock (1 s from the upload)")
                        burstUntil = Clock.now() + 1
                        jobs.add { shop in rush.uploadKeys(shop, c) }
                    }
                    // Flash price drop.
                    if !dropDone && t >= cmd.dropAt * peak {
                        dropDone = true
                        run.report.events.append(ChartEvent(t: p.elapsed, label: "price drop"))
                        ledger.setMoment("4 peak, price drop (1 s from the PATCH)")
                        burstUntil = Clock.now() + 1
                        jobs.add { shop in s.priceDrop(shop, connected: connectedWatchers, offline: offline) }
                    }
                    // Offline watchers come back with `since` a few seconds after the drop and read their alert.
                    if dropDone && !out.offlineCheckStarted && t >= cmd.dropAt * peak + 3 && s.pricePatched {
                        out.offlineCheckStarted = true
                        ledger.setMoment("5 peak, offline watchers come back (until 1 s after the last)")
                        burstUntil = nil
                        for w in offline {
                            w.onOnline = { b in
                                offlineChecked.add()
                                DispatchQueue.global().async { fleet.close(b) }
                            }
                        }
                    }
                    if out.offlineCheckStarted {
                        let due = min(offline.count, Int((t - cmd.dropAt * peak - 3) * cmd.connectRate) + 1)
                        while out.offlineNext < due && out.offlineNext - offlineChecked.value < 500 {
                            fleet.connect(offline[out.offlineNext], since: true, index: out.offlineNext)
                            out.offlineNext += 1
                        }
                        if out.offlineNext == offline.count && offlineChecked.value >= offline.count && !offlineReturnDone {
                            offlineReturnDone = true
                            burstUntil = Clock.now() + 1
                        }
                    }
                    if let until = burstUntil, Clock.now() >= until {
                        burstUntil = nil
                        ledger.setMoment(steady)
                    }
                    // Browsers dropped by accident come back like the stormed ones.
                    if run.tickDue() {
                        if !inStorm {
                            let down = fleet.lock.withLock { (browsers + run.restockExtra).enumerated().filter { $0.element.state == .down } }
                            for (i, b) in down { fleet.connect(b, since: true, index: i) }
                        }
                        if s.chaos != nil { s.retryFailed(browsers, offline: out.offlineCheckStarted ? offline : []) }
                        s.peakLine(run, "peak")
                    }
                    usleep(5_000)
                }
              }
            }
            return out
        }
    }

    /// 4. Late pushes, queued HTTP work, stragglers of the offline check (and, under chaos,
    /// browsers still coming back and claims still unanswered).
    struct Drain {
        let run: Run
        let setUp: SetUp.Result
        let peak: Peak.Result

        func callAsFunction() {
            let s = run.scenario, cmd = s.cmd, fleet = s.fleet!, jobs = s.jobs!, ledger = s.ledger, p = run.progress
            let browsers = run.browsers, offline = run.offline
            ledger.setMoment("6 drain")
            let drainStart = Clock.now()
            while Clock.now() - drainStart < Double(cmd.drain) {
                Children.haltIfInterrupted()
                if s.chaos != nil && Clock.now() >= run.nextTick {
                    let down = fleet.lock.withLock { browsers.enumerated().filter { $0.element.state == .down } }
                    for (i, b) in down { fleet.connect(b, since: true, index: i) }
                    s.retryFailed(browsers, offline: peak.offlineCheckStarted ? offline : [])
                }
                if peak.offlineCheckStarted {
                    while peak.offlineNext < offline.count && peak.offlineNext - peak.offlineChecked.value < 500 {
                        fleet.connect(offline[peak.offlineNext], since: true, index: peak.offlineNext)
                        peak.offlineNext += 1
                    }
                }
                let groupsDone = s.groupsComplete(setUp.groupMembersByGroup)
                let chaosDone = s.chaos.map { $0.faultsDone && !s.claimsPending } ?? true
                if jobs.pending == 0 && ledger.outstanding == 0 && groupsDone && chaosDone
                    && peak.offlineChecked.value + (s.chaos == nil ? fleet.snapshot.failed : 0) >= (peak.offlineCheckStarted ? offline.count : 0) {
                    break
                }
                usleep(50_000)
                if run.tickDue() { s.peakLine(run, "drain") }
            }
            p.note("drain: \(Fmt.num(Clock.now() - drainStart, 1)) s; reading back gifts and friend-pay orders")
        }
    }
}
