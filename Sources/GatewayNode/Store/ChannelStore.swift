import GatewayCore
import GatewayProtocol
import GatewayRedis

/// Channels: publishing, a subscriber's read/recovery, history pages.
protocol ChannelStore: AnyObject {
    /// Appends and announces a push. `merchant` non-nil: only on that merchant's product's
    /// group: or product: channel (user: channels are refused before the store is asked).
    func publish(_ channel: Channel, type: String, data: String, merchant: String?,
                 _ done: @escaping (StoreResult<PublishOutcome>) -> Void)
    /// The channel's position and what came after `since` (`ChannelHub`'s reads).
    func read(_ channel: Channel, since: StreamPosition?, purpose: ReadPurpose, _ done: @escaping (StoreResult<ReadResult>) -> Void)
    func history(_ channel: Channel, since: StreamPosition?, limit: Int, _ done: @escaping (StoreResult<HistoryPage>) -> Void)
}

enum PublishOutcome: Equatable {
    case published(offset: UInt64)
    case noProduct
    case notYours
}

/// One page of `history`: publications oldest first.
struct HistoryPage: Equatable {
    var offset: Int64
    var epoch: String
    /// The caps (`history.max_reply_bytes`, `history.max_recover`), not `limit`, left some out.
    var truncated: Bool
    var publications: [[UInt8]]
}

// MARK: Reply formats (the scripts' return values)

extension PublishOutcome: RedisReplyDecodable {
    /// publish.lua: the offset, or -1 / -2.
    init(redisReply: RedisReply) throws(RedisDecodingError) {
        switch try Int64(redisReply: redisReply) {
        case -1: self = .noProduct
        case -2: self = .notYours
        case let offset where offset > 0: self = .published(offset: UInt64(offset))
        case let other: throw .unexpected(expected: "an offset", got: String(other))
        }
    }
}

/// `{offset, epoch, flag, off1, push1, ...}` of read.lua and history.lua.
struct ChannelPage: RedisReplyDecodable {
    var offset: Int64
    var epoch: String
    var flag: Bool
    var publications: [(offset: Int64, push: [UInt8])]

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        offset = try reader.next()
        epoch = try reader.next()
        flag = try reader.next(Int64.self) == 1
        publications = []
        while !reader.isAtEnd {
            let off: Int64 = try reader.next()
            publications.append((off, try reader.next(RedisBytes.self).bytes))
        }
    }

    var readResult: ReadResult {
        ReadResult(offset: UInt64(max(offset, 0)), epoch: epoch, recovered: flag,
                   publications: publications.map { Publication(offset: UInt64($0.offset), epoch: epoch, payload: Payload(push: $0.push)) })
    }

    var historyPage: HistoryPage {
        HistoryPage(offset: offset, epoch: epoch, truncated: flag, publications: publications.map(\.push))
    }
}

/// Channels on Redis: every call and key of channel publishing and reading.
final class RedisChannelStore: ChannelStore {
    let calls: RedisCalls
    let settings: StoreSettings

    init(redis: any RedisLink, settings: StoreSettings, log: @escaping (String) -> Void) {
        calls = RedisCalls(redis: redis, log: log)
        self.settings = settings
    }

    func publish(_ channel: Channel, type: String, data: String, merchant: String?,
                 _ done: @escaping (StoreResult<PublishOutcome>) -> Void) {
        var keys = [StoreKeys.meta(channel), StoreKeys.log(channel)]
        let args: [RedisArgument] = [channel.description, type, data, settings.historySize(channel.kind),
                                     settings.historyTTLSeconds, settings.newEpoch()]
        guard let merchant else {
            return calls.run(ChannelScripts.publish, keys: keys, args: args + [""], done)
        }
        switch channel.kind {
        case .user, .sale:
            // A sale's channel carries the gateway's own pushes only.
            done(.success(.notYours))
        case .product:
            // The product's info shares the channel's slot: checked inside the script.
            keys.append(StoreKeys.productInfo(channel.id))
            calls.run(ChannelScripts.publish, keys: keys, args: args + [merchant], done)
        case .group:
            // The group channel's slot is not the product's: ownership is read first.
            calls.send(["HGET", StoreKeys.productInfo(channel.id), "merchant"], key: StoreKeys.productInfo(channel.id),
                       as: String?.self) { owner in
                switch owner {
                case .failure(let e): done(.failure(e))
                case .success(nil): done(.success(.noProduct))
                case .success(let o?) where o != merchant: done(.success(.notYours))
                case .success: self.calls.run(ChannelScripts.publish, keys: keys, args: args + [""], done)
                }
            }
        }
    }

    func read(_ channel: Channel, since: StreamPosition?, purpose: ReadPurpose, _ done: @escaping (StoreResult<ReadResult>) -> Void) {
        // A subscriber's recovery answers the newest that fit; a gap fill reads oldest first in pages.
        let mode = purpose == .gapFill ? "page" : "recover"
        let args: [RedisArgument] = [since.map { String($0.offset) } ?? "", since?.epoch ?? "", settings.newEpoch(),
                                     settings.historyTTLSeconds, mode, settings.replyPublicationBytes, settings.maxRecover]
        calls.run(ChannelScripts.read, keys: [StoreKeys.meta(channel), StoreKeys.log(channel)], args: args, as: ChannelPage.self) {
            done($0.map(\.readResult))
        }
    }

    func history(_ channel: Channel, since: StreamPosition?, limit: Int, _ done: @escaping (StoreResult<HistoryPage>) -> Void) {
        let args: [RedisArgument] = [since.map { String($0.offset) } ?? "", since?.epoch ?? "", limit,
                                     settings.replyPublicationBytes, settings.maxRecover]
        calls.run(ChannelScripts.history, keys: [StoreKeys.meta(channel), StoreKeys.log(channel)], args: args, as: ChannelPage.self) {
            done($0.map(\.historyPage))
        }
    }
}
