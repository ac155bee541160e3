import CommunityCore
import GatewayProtocol

/// CommunityStore in memory, for unit tests of node logic, with the scripts' rules:
/// mutes and the buyers' rate window, watches and their expiry, merchant checks, alerts
/// skipped when the watch changed, and (with `isCluster`) alerts going through an outbox
/// that `relayOutbox` relays idempotently, as OutboxRelay does.
final class MemoryCommunityStore: CommunityStore {
    let channels: MemoryChannelStore
    var nowMs: () -> Int64
    var isCluster = false
    var failure: GatewayError?

    private(set) var products: [String: ProductRecord] = [:]
    var stock: [String: Int64] = [:]
    /// product -> user -> orders making the user a buyer.
    var members: [String: [String: Int]] = [:]
    /// product -> user -> watch record.
    private(set) var watchRecords: [String: [String: String]] = [:]
    private(set) var userWatches: [String: Set<String>] = [:]
    /// product -> restock line, in watch order.
    private(set) var restockLines: [String: [String]] = [:]
    private var mutes: [String: Int64] = [:]
    private var rates: [String: (count: Int, endsAt: Int64)] = [:]
    /// channel -> node -> (heartbeat expiry, users).
    private var presenceNodes: [Channel: [String: (expiry: Int64, users: Set<String>)]] = [:]
    /// product -> outbox entries (id, channel, type, data, size).
    private(set) var outboxes: [String: [(id: String, channel: Channel, type: String, data: String, size: Int)]] = [:]
    private var outboxSequence: Int64 = 0
    private var botLease: (node: String, until: Int64)?
    /// Alert jobs by job id (alert_claim.lua's state): claims are page start -> lease end.
    private var listedAlertJobs: [String: Int64] = [:]
    private var alertJobs: [String: (spec: String, price: Int64, next: Int, end: Bool, sent: Int, at: Int64, claims: [Int: Int64])] = [:]

    init(channels: MemoryChannelStore) {
        self.channels = channels
        nowMs = channels.nowMs
        channels.merchantOf = { [weak self] in self?.products[$0]?.merchant }
    }

    private func fail<T>(_ done: (StoreResult<T>) -> Void) -> Bool {
        guard let failure else { return false }
        done(.failure(failure))
        return true
    }

    func isBuyer(product: String, user: String, _ done: @escaping (StoreResult<Bool>) -> Void) {
        if fail(done) { return }
        done(.success((members[product]?[user] ?? 0) > 0))
    }

    func productExists(_ id: String, _ done: @escaping (StoreResult<Bool>) -> Void) {
        if fail(done) { return }
        done(.success(products[id] != nil))
    }

    // MARK: Groups

    func groupPublish(product: String, user: String, limited: Bool, rate: Int, windowMs: Int, data: String,
                      _ done: @escaping (StoreResult<GroupPublishOutcome>) -> Void) {
        if fail(done) { return }
        let now = nowMs()
        let key = "\(product)\u{0}\(user)"
        if let until = mutes[key], until > now { return done(.success(.muted(untilMs: until))) }
        if limited {
            var window = rates[key] ?? (0, now + Int64(windowMs))
            if window.endsAt <= now { window = (0, now + Int64(windowMs)) }
            window.count += 1
            rates[key] = window
            if window.count > rate { return done(.success(.rateLimited(retryAfterMs: max(window.endsAt - now, 1)))) }
        }
        let offset = channels.append(.group(product), type: "group.message", data: data)
        done(.success(.published(offset: Int64(offset))))
    }

    func moderate(product: String, action: ModerationAction, user: String, untilMs: Int64, offset: UInt64,
                  _ done: @escaping (StoreResult<Bool>) -> Void) {
        if fail(done) { return }
        let key = "\(product)\u{0}\(user)"
        switch action {
        case .mute: mutes[key] = untilMs
        case .unmute: mutes[key] = nil
        case .delete:
            let current = channels.logs[.group(product)]?.offset ?? 0
            guard offset >= 1, Int64(offset) <= current else { return done(.success(false)) }
            channels.append(.group(product), type: "group.deleted", data: "{\"offset\":\(offset)}")
        }
        done(.success(true))
    }

    // MARK: Presence

    func presenceJoin(_ channel: Channel, node: String, ttlMs: Int64, user: String, _ done: @escaping (StoreResult<Bool>) -> Void) {
        if fail(done) { return }
        let now = nowMs()
        let wasAlive = (presenceNodes[channel]?[node]?.expiry ?? 0) >= now
        var entry = presenceNodes[channel]?[node] ?? (0, [])
        entry.users.insert(user)
        entry.expiry = now + ttlMs
        presenceNodes[channel, default: [:]][node] = entry
        done(.success(!wasAlive))
    }

    func presenceLeave(_ channel: Channel, node: String, user: String) {
        guard failure == nil, var entry = presenceNodes[channel]?[node] else { return }
        entry.users.remove(user)
        presenceNodes[channel]?[node] = entry.users.isEmpty ? nil : entry
    }

    func presenceRenew(_ channel: Channel, node: String, ttlMs: Int64, _ done: @escaping (StoreResult<Bool>) -> Void) {
        if fail(done) { return }
        let now = nowMs()
        let wasAlive = (presenceNodes[channel]?[node]?.expiry ?? 0) >= now
        var entry = presenceNodes[channel]?[node] ?? (0, [])
        entry.expiry = now + ttlMs
        presenceNodes[channel, default: [:]][node] = entry
        reap(channel, now: now)
        done(.success(!wasAlive))
    }

    func presenceSync(_ channel: Channel, node: String, ttlMs: Int64, users: [String]) {
        guard failure == nil else { return }
        presenceNodes[channel, default: [:]][node] = users.isEmpty ? nil : (nowMs() + ttlMs, Set(users))
    }

    private func reap(_ channel: Channel, now: Int64) {
        presenceNodes[channel] = presenceNodes[channel]?.filter { $0.value.expiry >= now }
    }

    func presence(_ channel: Channel, _ done: @escaping (StoreResult<PresenceSnapshot>) -> Void) {
        if fail(done) { return }
        reap(channel, now: nowMs())
        let online = Set((presenceNodes[channel] ?? [:]).values.flatMap(\.users))
        done(.success(PresenceSnapshot(online: Int64(online.count), buyers: Int64(members[channel.id]?.count ?? 0),
                                       users: Array(online.sorted().prefix(RedisCommunityStore.presenceSample)))))
    }

    // MARK: Watches

    func watch(product: String, user: String, below: Int64?, restock: Bool, nowMs: Int64, ttlMs: Int64,
               _ done: @escaping (StoreResult<Int64?>) -> Void) {
        if fail(done) { return }
        guard let price = products[product]?.price else { return done(.success(nil)) }
        watchRecords[product] = watchRecords[product]?.filter { (Watch(product: product, user: $0.key, record: $0.value)?.expiresAt ?? 0) > nowMs }
        restockLines[product] = restockLines[product]?.filter { watchRecords[product]?[$0] != nil }
        if !restock {
            restockLines[product]?.removeAll { $0 == user }
        } else if !(restockLines[product] ?? []).contains(user) {
            restockLines[product, default: []].append(user)
        }
        let template = WatchRecords.template(product: product, user: user, below: below, expiresAt: nowMs + ttlMs)
        watchRecords[product, default: [:]][user] = WatchRecords.filled(template, price: price)
        userWatches[user, default: []].insert(product)
        done(.success(price))
    }

    func unwatch(product: String, user: String, _ done: @escaping (StoreResult<Void>) -> Void) {
        if fail(done) { return }
        watchRecords[product]?[user] = nil
        restockLines[product]?.removeAll { $0 == user }
        userWatches[user]?.remove(product)
        done(.success(()))
    }

    func watches(user: String, nowMs: Int64, _ done: @escaping (StoreResult<[WatchedProduct]>) -> Void) {
        if fail(done) { return }
        var out: [WatchedProduct] = []
        for product in (userWatches[user] ?? []).sorted() {
            guard let record = watchRecords[product]?[user], let price = products[product]?.price else {
                userWatches[user]?.remove(product)
                continue
            }
            if let w = Watch(product: product, user: user, record: record), w.expiresAt > nowMs {
                out.append(WatchedProduct(watch: w, price: price, restock: (restockLines[product] ?? []).contains(user)))
            }
        }
        done(.success(out))
    }

    // MARK: Products

    func createProduct(_ product: ProductRecord, _ done: @escaping (StoreResult<Bool>) -> Void) {
        if fail(done) { return }
        guard products[product.id] == nil else { return done(.success(false)) }
        products[product.id] = product
        done(.success(true))
    }

    func product(_ id: String, _ done: @escaping (StoreResult<ProductView?>) -> Void) {
        if fail(done) { return }
        done(.success(products[id].map {
            ProductView(product: $0, stock: stock[id] ?? 0, buyers: Int64(members[id]?.count ?? 0),
                        watchers: Int64(watchRecords[id]?.count ?? 0))
        }))
    }

    func updateProduct(_ id: String, price: Int64?, title: String?, merchant: String?,
                       _ done: @escaping (StoreResult<ProductUpdate>) -> Void) {
        if fail(done) { return }
        guard var p = products[id] else { return done(.success(.noProduct)) }
        if let merchant, merchant != p.merchant { return done(.success(.notYours)) }
        let previous = p.price
        p.price = price ?? p.price
        p.title = title ?? p.title
        products[id] = p
        if p.price != previous {
            channels.append(.product(id), type: "product.price",
                            data: "{\"currency\":\"\(p.currency)\",\"previous\":\(previous),\"price\":\(p.price),\"product\":\"\(id)\"}")
        }
        done(.success(.updated(previous: previous, price: p.price, title: p.title, currency: p.currency)))
    }

    func watchersBelow(product: String, price: Int64, start: Int, count: Int, _ done: @escaping (StoreResult<WatcherPage>) -> Void) {
        if fail(done) { return }
        let all = (watchRecords[product] ?? [:]).compactMap { Watch(product: product, user: $0.key, record: $0.value) }
            .filter { $0.threshold > price }
            .sorted { ($0.threshold, $0.user) < ($1.threshold, $1.user) }
        let page = Array(all.dropFirst(start).prefix(count))
        done(.success(WatcherPage(scanned: page.count, watches: page)))
    }

    func sendAlerts(product: String, _ alerts: [PriceDropAlert], _ done: @escaping (StoreResult<Int>) -> Void) {
        if fail(done) { return }
        var sent = 0
        for alert in alerts where watchRecords[product]?[alert.seen.user] == alert.seen.record {
            watchRecords[product]?[alert.seen.user] = alert.after.record
            let channel = Channel.user(alert.seen.user)
            if isCluster {
                outboxSequence += 1
                outboxes[product, default: []].append(("\(nowMs())-\(outboxSequence)", channel, "price.drop", alert.data,
                                                       channels.settings.historyUserSize))
            } else {
                channels.append(channel, type: "price.drop", data: alert.data, size: channels.settings.historyUserSize)
            }
            sent += 1
        }
        if isCluster { relayOutbox(product) }
        done(.success(sent))
    }

    func openAlerts(product: String, job: String, spec: String, price: Int64, ttlMs: Int, _ done: @escaping (StoreResult<Void>) -> Void) {
        if fail(done) { return }
        alertJobs[job] = (spec, price, 0, false, 0, nowMs(), [:])
        done(.success(()))
    }

    func claimAlertPage(product: String, job: String, count: Int, leaseMs: Int, _ done: @escaping (StoreResult<AlertClaim>) -> Void) {
        if fail(done) { return }
        guard var j = alertJobs[job] else { return done(.success(.gone)) }
        let now = nowMs()
        let start: Int
        if let lapsed = j.claims.filter({ $0.value <= now }).min(by: { ($0.value, $0.key) < ($1.value, $1.key) }) {
            start = lapsed.key
        } else if !j.end {
            start = j.next
            j.next += count
        } else if let first = j.claims.values.min() {
            return done(.success(.wait(ms: Int(first - now))))
        } else {
            return done(.success(.done(sent: j.sent, ms: Int(now - j.at))))
        }
        let all = (watchRecords[product] ?? [:]).compactMap { Watch(product: product, user: $0.key, record: $0.value) }
            .filter { $0.threshold > j.price }
            .sorted { ($0.threshold, $0.user) < ($1.threshold, $1.user) }
        let watches = Array(all.dropFirst(start).prefix(count))
        if watches.count < count { j.end = true }
        let lease = now + Int64(leaseMs)
        j.claims[start] = watches.isEmpty ? nil : lease
        alertJobs[job] = j
        done(.success(.page(AlertPage(start: start, lease: lease, scanned: watches.count, spec: j.spec, watches: watches))))
    }

    func alertPageDone(product: String, job: String, page: AlertPage, sent: Int) {
        guard alertJobs[job] != nil else { return }
        if alertJobs[job]?.claims[page.start] == page.lease { alertJobs[job]?.claims[page.start] = nil }
        alertJobs[job]?.sent += sent
    }

    func closeAlerts(product: String, job: String) { alertJobs[job] = nil }

    func listAlerts(product: String, job: String, untilMs: Int64, _ done: @escaping (StoreResult<Void>) -> Void) {
        if fail(done) { return }
        listedAlertJobs["\(job):\(product)"] = untilMs
        done(.success(()))
    }

    func unlistAlerts(product: String, job: String) { listedAlertJobs["\(job):\(product)"] = nil }

    func listedAlerts(nowMs: Int64, _ done: @escaping (StoreResult<[(product: String, job: String)]>) -> Void) {
        if fail(done) { return }
        done(.success(listedAlertJobs.filter { $0.value >= nowMs }.keys.sorted().compactMap(AlertJobs.entry)))
    }

    /// Places are 1-based positions in the in-memory line (it has no gaps to page over).
    func restockLine(product: String, after: String?, count: Int, nowMs: Int64, _ done: @escaping (StoreResult<RestockLinePage>) -> Void) {
        if fail(done) { return }
        let line = restockLines[product] ?? []
        let start = after.flatMap { Int($0) } ?? 0
        let page = Array(line.dropFirst(start).prefix(count))
        let live = page.filter { user in
            watchRecords[product]?[user].flatMap { Watch(product: product, user: user, record: $0) }.map { $0.expiresAt > nowMs } ?? false
        }
        done(.success(RestockLinePage(read: page.count, last: page.isEmpty ? after : String(start + page.count), users: live)))
    }

    func restockNotify(product: String, users: [String], data: String, onlyInLine: Bool, _ done: @escaping (StoreResult<Int>) -> Void) {
        if fail(done) { return }
        var sent = 0
        for user in users where !onlyInLine || (restockLines[product] ?? []).contains(user) {
            _ = channels.append(.user(user), type: "product.restock", data: data, size: channels.settings.historyUserSize)
            sent += 1
        }
        done(.success(sent))
    }

    /// OutboxRelay's work: every entry in order, deduplicated per channel, then deleted.
    /// Returns the number published (entries relayed before are skipped).
    @discardableResult
    func relayOutbox(_ product: String, keep: Bool = false) -> Int {
        let outbox = StoreKeys.outbox(product)
        var published = 0
        for entry in outboxes[product] ?? [] {
            if channels.relay(entry.channel, outbox: outbox, entryID: entry.id, type: entry.type, data: entry.data, size: entry.size) != nil {
                published += 1
            }
        }
        if !keep { outboxes[product] = nil }
        return published
    }

    func renewBotLease(node: String, ttlMs: Int, _ done: @escaping (StoreResult<Bool>) -> Void) {
        if fail(done) { return }
        let now = nowMs()
        if let lease = botLease, lease.until > now, lease.node != node { return done(.success(false)) }
        botLease = (node, now + Int64(ttlMs))
        done(.success(true))
    }
}
