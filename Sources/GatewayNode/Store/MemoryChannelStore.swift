import GatewayCore
import GatewayProtocol

/// ChannelStore in memory, for unit tests of node logic: the same pushes, offsets, epochs
/// and paging caps as publish.lua / read.lua / history.lua, without Redis.
final class MemoryChannelStore: ChannelStore {
    struct Log {
        var epoch: String?
        var offset: Int64 = 0
        /// Held entries, oldest first: (offset, push JSON).
        var entries: [(offset: Int64, push: [UInt8])] = []
        /// Per source outbox, the last entry id relayed here (relay.lua).
        var relayed: [String: String] = [:]
    }

    var settings: StoreSettings
    var nowMs: () -> Int64
    /// The merchant of a product, nil without it (the merchant check of publish).
    var merchantOf: (String) -> String? = { _ in nil }
    /// When set, every call fails with it (Redis away).
    var failure: GatewayError?
    private(set) var logs: [Channel: Log] = [:]
    /// Every announcement, in order: what the channel's subscribers would receive.
    private(set) var announced: [(channel: Channel, offset: UInt64, push: String)] = []

    init(settings: StoreSettings = StoreSettings(), nowMs: @escaping () -> Int64) {
        self.settings = settings
        self.nowMs = nowMs
    }

    /// lib_publish.lua's `publish`: the one push format.
    @discardableResult
    func append(_ channel: Channel, type: String, data: String, size: Int? = nil, ts: Int64? = nil) -> UInt64 {
        var log = logs[channel] ?? Log()
        let epoch = log.epoch ?? settings.newEpoch()
        log.epoch = epoch
        log.offset += 1
        let push = "{\"push\":\"\(type)\",\"channel\":\"\(channel)\",\"offset\":\(log.offset),\"epoch\":\"\(epoch)\",\"ts\":\(ts ?? nowMs()),\"data\":\(data)}"
        log.entries.append((log.offset, Array(push.utf8)))
        let keep = size ?? settings.historySize(channel.kind)
        if log.entries.count > keep { log.entries.removeFirst(log.entries.count - keep) }
        logs[channel] = log
        announced.append((channel, UInt64(log.offset), push))
        return UInt64(log.offset)
    }

    /// relay.lua: publishes an outbox entry unless one not older from the same outbox was.
    func relay(_ channel: Channel, outbox: String, entryID: String, type: String, data: String, size: Int) -> UInt64? {
        if let last = logs[channel]?.relayed[outbox], !Self.isNewer(entryID, than: last) { return nil }
        let offset = append(channel, type: type, data: data, size: size)
        logs[channel]?.relayed[outbox] = entryID
        return offset
    }

    /// Stream ids `ms-seq`, compared as numbers.
    static func isNewer(_ id: String, than other: String) -> Bool {
        func parts(_ s: String) -> (Int64, Int64) {
            let p = s.split(separator: "-").map { Int64($0) ?? 0 }
            return (p.first ?? 0, p.count > 1 ? p[1] : 0)
        }
        let (a, b) = (parts(id), parts(other))
        return a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
    }

    func publish(_ channel: Channel, type: String, data: String, merchant: String?,
                 _ done: @escaping (StoreResult<PublishOutcome>) -> Void) {
        if let failure { return done(.failure(failure)) }
        if let merchant {
            if channel.kind == .user { return done(.success(.notYours)) }
            guard let owner = merchantOf(channel.id) else { return done(.success(.noProduct)) }
            guard owner == merchant else { return done(.success(.notYours)) }
        }
        done(.success(.published(offset: append(channel, type: type, data: data))))
    }

    func read(_ channel: Channel, since: StreamPosition?, purpose: ReadPurpose, _ done: @escaping (StoreResult<ReadResult>) -> Void) {
        if let failure { return done(.failure(failure)) }
        var log = logs[channel] ?? Log()
        if log.epoch == nil {
            log.epoch = settings.newEpoch()
            logs[channel] = log
        }
        let epoch = log.epoch!
        func result(_ recovered: Bool, _ kept: [(offset: Int64, push: [UInt8])] = []) -> StoreResult<ReadResult> {
            .success(ReadResult(offset: UInt64(log.offset), epoch: epoch, recovered: recovered,
                                publications: kept.map { Publication(offset: UInt64($0.offset), epoch: epoch, payload: Payload(push: $0.push)) }))
        }
        guard let since else { return done(result(false)) }
        let from = Int64(since.offset)
        guard since.epoch == epoch, from <= log.offset else { return done(result(false)) }
        if from == log.offset { return done(result(true)) }
        guard log.entries.contains(where: { $0.offset == from + 1 }) else { return done(result(false)) }
        let range = log.entries.filter { $0.offset > from }
        if purpose == .gapFill {
            done(result(true, oldestThatFit(range)))
        } else {
            let (kept, cut) = newestThatFit(range)
            done(result(!cut, kept))
        }
    }

    func history(_ channel: Channel, since: StreamPosition?, limit: Int, _ done: @escaping (StoreResult<HistoryPage>) -> Void) {
        if let failure { return done(.failure(failure)) }
        let log = logs[channel] ?? Log()
        let epoch = log.epoch ?? ""
        let lo: Int64, hi: Int64
        if let since, since.epoch == epoch {
            lo = max(Int64(since.offset) + 1, log.entries.first?.offset ?? 0)
            hi = min(log.offset, lo + Int64(limit) - 1)
        } else {
            hi = log.offset
            lo = max(1, log.offset - Int64(limit) + 1)
        }
        let (kept, cut) = newestThatFit(log.entries.filter { $0.offset >= lo && $0.offset <= hi })
        done(.success(HistoryPage(offset: log.offset, epoch: epoch, truncated: cut, publications: kept.map(\.push))))
    }

    /// lib_pages.lua: the newest entries within the caps (oldest first), and whether one was left out.
    private func newestThatFit(_ range: [(offset: Int64, push: [UInt8])]) -> ([(offset: Int64, push: [UInt8])], Bool) {
        var kept: [(offset: Int64, push: [UInt8])] = []
        var bytes = 0
        for entry in range.reversed() {
            if kept.count >= settings.maxRecover || bytes + entry.push.count + 1 > settings.replyPublicationBytes {
                return (kept.reversed(), true)
            }
            kept.append(entry)
            bytes += entry.push.count + 1
        }
        return (kept.reversed(), false)
    }

    /// lib_pages.lua: at least one entry from the oldest, then as many as fit.
    private func oldestThatFit(_ range: [(offset: Int64, push: [UInt8])]) -> [(offset: Int64, push: [UInt8])] {
        var kept: [(offset: Int64, push: [UInt8])] = []
        var bytes = 0
        for entry in range {
            if !kept.isEmpty && (kept.count >= settings.maxRecover || bytes + entry.push.count + 1 > settings.replyPublicationBytes) { break }
            kept.append(entry)
            bytes += entry.push.count + 1
        }
        return kept
    }
}
