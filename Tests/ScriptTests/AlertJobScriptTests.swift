import CommunityCore
import Foundation
@testable import GatewayNode
import GatewayProtocol
import XCTest

/// A price drop's alert job (alert_open, alert_claim, alert_done, send_alerts) walked by
/// several "nodes" at once: each its own store and connection to one real server, their
/// replies queued and handed out in turn, so their pipelined pages interleave.
final class AlertJobScriptTests: XCTestCase {
    /// Replies and timers of every node, in arrival order; timers run when no reply waits.
    final class Pump {
        var ready: [() -> Void] = []
        var timers: [(at: Double, body: () -> Void)] = []

        func run(until done: () -> Bool, timeout: Double = 20) {
            let end = Date().timeIntervalSince1970 + timeout
            while !done() && Date().timeIntervalSince1970 < end {
                if !ready.isEmpty {
                    ready.removeFirst()()
                } else if let i = timers.indices.min(by: { timers[$0].at < timers[$1].at }) {
                    let t = timers.remove(at: i)
                    let wait = t.at - Date().timeIntervalSince1970
                    if wait > 0 { usleep(UInt32(wait * 1e6)) }
                    t.body()
                } else {
                    return
                }
            }
        }
    }

    /// A node: its link's replies go through the pump unless it is `stalled` (held until released).
    final class Node {
        let link: ScriptRedisLink
        let store: RedisCommunityStore
        var stalled = false
        var held: [() -> Void] = []
        var walker: AlertWalker?
        var end: AlertWalker.End?

        init(_ f: StoreFixture, _ pump: Pump, cluster: Bool) {
            link = ScriptRedisLink(f.redis, cluster: cluster)
            let relay = OutboxRelay(redis: link, settings: StoreFixture.settings, log: { _ in }, schedule: nil)
            store = RedisCommunityStore(redis: link, settings: StoreFixture.settings, relay: relay, log: { _ in })
            link.answer = { [unowned self] reply in
                if self.stalled { self.held.append(reply) } else { pump.ready.append(reply) }
            }
        }

        func walk(_ job: String, _ pump: Pump, pacing: AlertWalker.Pacing) {
            walker = AlertWalker(product: "p", job: job, store: store, pacing: pacing, now: { Int64(Date().timeIntervalSince1970 * 1000) },
                                 schedule: { ms, body in pump.timers.append((Date().timeIntervalSince1970 + Double(ms) / 1000, body)) },
                                 finished: { [unowned self] in self.end = $0 })
            walker!.start()
        }
    }

    /// Product `p` with `watchers` watchers (`w0`...) and its alert job `job` open, as the
    /// node that takes a price from 100 to 80 opens it.
    private func openedJob(_ job: String, watchers: Int, cluster: Bool = false) throws -> (StoreFixture, [String], Int64) {
        let f = try StoreFixture(cluster: cluster)
        XCTAssertTrue(try f.value { f.community.createProduct(ProductRecord(id: "p", merchant: "m", title: "T", price: 100, currency: "CNY",
                                                                            createdAt: 1), $0) })
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let users = (0..<watchers).map { "w\($0)" }
        for user in users { _ = try f.value { f.community.watch(product: "p", user: user, below: nil, nowMs: now, ttlMs: 600_000, $0) } }
        let drop = PriceDrop(product: "p", title: "T", currency: "CNY", previous: 100, price: 80, cooldownMs: 3_600_000)
        try f.value { f.community.openAlerts(product: "p", job: job, spec: drop.spec, price: 80, ttlMs: 60_000, $0) }
        return (f, users, now)
    }

    private func dropToEveryWatcher(cluster: Bool) throws {
        let (f, users, _) = try openedJob("j1", watchers: 230, cluster: cluster)

        // 24 pages of 10, three in flight per node. Node c claims its first pages and stalls
        // past their lease; a and b take them over and finish the job.
        let pacing = AlertWalker.Pacing(pageSize: 10, inFlight: 3, leaseMs: 300, waitMs: 20, retryMs: 100)
        let pump = Pump()
        let a = Node(f, pump, cluster: cluster), b = Node(f, pump, cluster: cluster), c = Node(f, pump, cluster: cluster)
        c.stalled = true
        c.walk("j1", pump, pacing: pacing)
        a.walk("j1", pump, pacing: pacing)
        b.walk("j1", pump, pacing: pacing)
        pump.run(until: { a.end != nil && b.end != nil })
        guard case .done(let sent, _) = a.end else { return XCTFail("the job ends done: \(String(describing: a.end))") }
        XCTAssertEqual(sent, users.count, "the job counts every alert once")
        XCTAssertEqual(a.walker!.sent + b.walker!.sent, users.count)
        XCTAssertGreaterThan(a.walker!.pages, 3, "both nodes took pages")
        XCTAssertGreaterThan(b.walker!.pages, 3, "both nodes took pages")
        XCTAssertEqual(a.walker!.pages + b.walker!.pages, 24, "21 pages claimed first and the stalled node's 3 taken over")

        // The stalled node wakes: its pages were sent meanwhile, so it sends nothing again.
        c.stalled = false
        pump.ready += c.held
        c.held = []
        pump.run(until: { c.end != nil })
        XCTAssertEqual(c.walker!.sent, 0, "a page taken over is not alerted twice")
        XCTAssertNotNil(c.end)

        if cluster { f.relay.relay(StoreKeys.outbox("p")) }
        for user in users {
            let pushes = f.pushes("user:\(user)").filter { $0.contains(#""push":"price.drop""#) }
            XCTAssertEqual(pushes.count, 1, "\(user): exactly one alert")
        }
        // The same drop again (a late signal): the job says done, nobody is alerted again.
        let late = Node(f, pump, cluster: cluster)
        late.walk("j1", pump, pacing: pacing)
        pump.run(until: { late.end != nil })
        XCTAssertEqual(late.walker!.sent, 0)
    }

    func testPagesSpreadOverNodesAndEveryWatcherGetsOneAlertThoughANodeStalls() throws {
        try dropToEveryWatcher(cluster: false)
    }

    /// The cluster code path (outbox, relay) on a single server standing in for a cluster.
    func testTheSameThroughTheOutbox() throws {
        try dropToEveryWatcher(cluster: true)
    }

    /// The opener lists the job, claims its first pages and dies (its replies never come);
    /// node b never got the signal: it finds the job in the open jobs' index and finishes it,
    /// every watcher alerted once. While the dead node's leases run b probes one claim at a
    /// time with a growing wait (before: 3 claims every 20 ms, ~150 over the 1 s lease).
    func testAJobNobodyWasToldOfIsFoundInTheIndexAndFinishedAfterItsOpenerDied() throws {
        let (f, users, now) = try openedJob("0123abcd", watchers: 95)
        try f.value { f.community.listAlerts(product: "p", job: "0123abcd", untilMs: now + 60_000, $0) }
        try f.value { f.community.listAlerts(product: "q:x", job: "0ld", untilMs: now - 1, $0) }

        let pacing = AlertWalker.Pacing(pageSize: 10, inFlight: 3, leaseMs: 1_000, waitMs: 20, waitMaxMs: 160, retryMs: 100)
        let pump = Pump()
        let opener = Node(f, pump, cluster: false), b = Node(f, pump, cluster: false)
        opener.stalled = true
        opener.walk("0123abcd", pump, pacing: pacing)

        let listed = try f.value { f.community.listedAlerts(nowMs: Int64(Date().timeIntervalSince1970 * 1000), $0) }
        XCTAssertEqual(listed.map { "\($0.job) \($0.product)" }, ["0123abcd p"], "the open job; an expired entry is not read")
        b.walk("0123abcd", pump, pacing: pacing)
        pump.run(until: { b.end != nil })
        guard case .done(let sent, _) = b.end else { return XCTFail("the job ends done: \(String(describing: b.end))") }
        XCTAssertEqual(sent, users.count)
        XCTAssertEqual(b.walker!.pages, 10, "7 pages, and the opener's 3 taken over after their lease")
        XCTAssertLessThan(b.walker!.claims - b.walker!.pages, 20, "the waits probe one claim at a time")
        for user in users {
            XCTAssertEqual(f.pushes("user:\(user)").filter { $0.contains(#""push":"price.drop""#) }.count, 1, "\(user): exactly one alert")
        }
        f.community.unlistAlerts(product: "p", job: "0123abcd")
        XCTAssertEqual(try f.value { f.community.listedAlerts(nowMs: now, $0) }.count, 0, "a done job leaves the index")
    }

    func testAClaimReadsAPageAndTheJobEndsWhenEveryClaimEnded() throws {
        let f = try StoreFixture()
        XCTAssertTrue(try f.value { f.community.createProduct(ProductRecord(id: "p", merchant: "m", title: "T", price: 100, currency: "CNY",
                                                                            createdAt: 1), $0) })
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for user in ["a", "b", "c"] { _ = try f.value { f.community.watch(product: "p", user: user, below: 90, nowMs: now, ttlMs: 60_000, $0) } }
        XCTAssertEqual(try f.value { f.community.claimAlertPage(product: "p", job: "nope", count: 2, leaseMs: 1_000, $0) }, .gone)
        try f.value { f.community.openAlerts(product: "p", job: "j", spec: "{}", price: 80, ttlMs: 60_000, $0) }
        guard case .page(let first) = try f.value({ f.community.claimAlertPage(product: "p", job: "j", count: 2, leaseMs: 1_000, $0) }),
              case .page(let second) = try f.value({ f.community.claimAlertPage(product: "p", job: "j", count: 2, leaseMs: 1_000, $0) })
        else { return XCTFail("two pages") }
        XCTAssertEqual(first.watches.map(\.user), ["a", "b"])
        XCTAssertEqual([first.start, second.start], [0, 2])
        XCTAssertEqual(second.watches.map(\.user), ["c"], "a short page: the last")
        guard case .wait = try f.value({ f.community.claimAlertPage(product: "p", job: "j", count: 2, leaseMs: 1_000, $0) }) else {
            return XCTFail("both pages still claimed")
        }
        f.community.alertPageDone(product: "p", job: "j", page: first, sent: 2)
        var stale = second
        stale.lease -= 1
        f.community.alertPageDone(product: "p", job: "j", page: stale, sent: 0)
        XCTAssertEqual(f.redis.call(["ZCARD", StoreKeys.alertClaims("p", "j")]).int, 1, "another lease's end leaves the claim")
        f.community.alertPageDone(product: "p", job: "j", page: second, sent: 1)
        guard case .done(let sent, _) = try f.value({ f.community.claimAlertPage(product: "p", job: "j", count: 2, leaseMs: 1_000, $0) }) else {
            return XCTFail("done")
        }
        XCTAssertEqual(sent, 3)
        f.community.closeAlerts(product: "p", job: "j")
        XCTAssertEqual(f.redis.call(["EXISTS", StoreKeys.alertJob("p", "j"), StoreKeys.alertClaims("p", "j")]).int, 0)
    }
}
