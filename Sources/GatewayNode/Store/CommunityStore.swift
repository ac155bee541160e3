import Foundation
import CommunityCore
import GatewayProtocol
import GatewayRedis
import OrderCore

/// Buyer groups, presence, moderation, products and price watches.
protocol CommunityStore: AnyObject {
    /// Whether `user` bought `product` (a member of its group).
    func isBuyer(product: String, user: String, _ done: @escaping (StoreResult<Bool>) -> Void)
    func productExists(_ id: String, _ done: @escaping (StoreResult<Bool>) -> Void)

    /// A group message: refused while muted; `limited` (buyers) are rate limited.
    func groupPublish(product: String, user: String, limited: Bool, rate: Int, windowMs: Int, data: String,
                      _ done: @escaping (StoreResult<GroupPublishOutcome>) -> Void)
    /// false: a deletion of an offset the group does not have.
    func moderate(product: String, action: ModerationAction, user: String, untilMs: Int64, offset: UInt64,
                  _ done: @escaping (StoreResult<Bool>) -> Void)

    /// true: the node had no live heartbeat there (it should sync its users).
    func presenceJoin(_ channel: Channel, node: String, ttlMs: Int64, user: String, _ done: @escaping (StoreResult<Bool>) -> Void)
    func presenceLeave(_ channel: Channel, node: String, user: String)
    /// Renews the node's heartbeat and reaps a slice of dead nodes; true: the node had been
    /// taken for dead (it should sync its users).
    func presenceRenew(_ channel: Channel, node: String, ttlMs: Int64, _ done: @escaping (StoreResult<Bool>) -> Void)
    func presenceSync(_ channel: Channel, node: String, ttlMs: Int64, users: [String])
    func presence(_ channel: Channel, _ done: @escaping (StoreResult<PresenceSnapshot>) -> Void)

    /// The product's price, or nil without the product. `restock`: the user joins (or keeps
    /// their place in) the product's restock line; false leaves it.
    func watch(product: String, user: String, below: Int64?, restock: Bool, nowMs: Int64, ttlMs: Int64,
               _ done: @escaping (StoreResult<Int64?>) -> Void)
    func unwatch(product: String, user: String, _ done: @escaping (StoreResult<Void>) -> Void)
    /// The user's live watches (ended ones and gone products left out).
    func watches(user: String, nowMs: Int64, _ done: @escaping (StoreResult<[WatchedProduct]>) -> Void)

    /// false: the id exists.
    func createProduct(_ product: ProductRecord, _ done: @escaping (StoreResult<Bool>) -> Void)
    /// nil without the product.
    func product(_ id: String, _ done: @escaping (StoreResult<ProductView?>) -> Void)
    /// `merchant` nil for the shop; otherwise the product must be that merchant's.
    func updateProduct(_ id: String, price: Int64?, title: String?, merchant: String?,
                       _ done: @escaping (StoreResult<ProductUpdate>) -> Void)
    /// Watchers whose threshold is above `price`, `count` from rank `start` among them.
    func watchersBelow(product: String, price: Int64, start: Int, count: Int, _ done: @escaping (StoreResult<WatcherPage>) -> Void)
    /// Sends the alerts whose watch is still as read; the number sent.
    func sendAlerts(product: String, _ alerts: [PriceDropAlert], _ done: @escaping (StoreResult<Int>) -> Void)
    /// Opens price drop `job`'s alert job (`spec`: `PriceDrop.spec`), whose pages any node may claim.
    func openAlerts(product: String, job: String, spec: String, price: Int64, ttlMs: Int, _ done: @escaping (StoreResult<Void>) -> Void)
    /// Claims a page of `job` for `leaseMs` (a lapsed one first) and reads its watchers.
    func claimAlertPage(product: String, job: String, count: Int, leaseMs: Int, _ done: @escaping (StoreResult<AlertClaim>) -> Void)
    /// A claimed page was sent: its claim ends (if still `page.lease`) and `sent` is counted.
    func alertPageDone(product: String, job: String, page: AlertPage, sent: Int)
    /// Drops a finished job.
    func closeAlerts(product: String, job: String)
    /// Lists `job` among the open alert jobs until `untilMs` (every node sweeps them).
    func listAlerts(product: String, job: String, untilMs: Int64, _ done: @escaping (StoreResult<Void>) -> Void)
    /// Takes `job` off the open alert jobs (it is done or gone).
    func unlistAlerts(product: String, job: String)
    /// The open alert jobs not yet expired at `nowMs` (at most 100).
    func listedAlerts(nowMs: Int64, _ done: @escaping (StoreResult<[(product: String, job: String)]>) -> Void)

    /// Live entries of `product`'s restock line after place `after` (nil: from the start), `count` read.
    func restockLine(product: String, after: String?, count: Int, nowMs: Int64, _ done: @escaping (StoreResult<RestockLinePage>) -> Void)
    /// Pushes `product.restock` with `data` to `users`; `onlyInLine`: to those still in the
    /// restock line (the rest of the line), else to all (the new holders). The number sent.
    func restockNotify(product: String, users: [String], data: String, onlyInLine: Bool, _ done: @escaping (StoreResult<Int>) -> Void)

    /// Takes or keeps the demo bot's lease; true while `node` holds it.
    func renewBotLease(node: String, ttlMs: Int, _ done: @escaping (StoreResult<Bool>) -> Void)
}

extension CommunityStore {
    /// A price watch only (no restock line).
    func watch(product: String, user: String, below: Int64?, nowMs: Int64, ttlMs: Int64, _ done: @escaping (StoreResult<Int64?>) -> Void) {
        watch(product: product, user: user, below: below, restock: false, nowMs: nowMs, ttlMs: ttlMs, done)
    }
}

enum GroupPublishOutcome: Equatable {
    case published(offset: Int64)
    case muted(untilMs: Int64)
    case rateLimited(retryAfterMs: Int64)
}

struct PresenceSnapshot: Equatable {
    var online: Int64
    var buyers: Int64
    /// At most 100 of the users online.
    var users: [String]
}

/// A product's own fields (its info hash).
package struct ProductRecord: Equatable {
    package var id: String
    package var merchant: String
    package var title: String
    package var price: Int64
    package var currency: String
    package var createdAt: Int64
    /// Days of membership a delivery gives (`validity_days`, 4.6); nil: not a membership product.
    package var validityDays: Int?

    var fields: [RedisArgument] {
        var f: [RedisArgument] = ["id", id, "merchant", merchant, "title", title, "price", price, "currency", currency, "created_at", createdAt]
        if let validityDays { f += ["validity_days", validityDays] }
        return f
    }

    package init(id: String, merchant: String, title: String, price: Int64, currency: String, createdAt: Int64, validityDays: Int? = nil) {
        self.id = id
        self.merchant = merchant
        self.title = title
        self.price = price
        self.currency = currency
        self.createdAt = createdAt
        self.validityDays = validityDays
    }

    /// nil when the hash is empty (no product).
    init?(_ hash: RedisHash) {
        guard let id = hash["id"], let merchant = hash["merchant"] else { return nil }
        self.init(id: id, merchant: merchant, title: hash["title"] ?? "", price: Int64(hash["price"] ?? "") ?? 0,
                  currency: hash["currency"] ?? "", createdAt: Int64(hash["created_at"] ?? "") ?? 0,
                  validityDays: hash["validity_days"].flatMap { Int($0) })
    }
}

package struct ProductView: Equatable {
    package var product: ProductRecord
    package var stock: Int64
    package var buyers: Int64
    package var watchers: Int64
    /// Live restock holds (keys out of the stock until used or released).
    package var held: Int64 = 0
}

enum ProductUpdate: Equatable {
    case updated(previous: Int64, price: Int64, title: String, currency: String)
    case noProduct
    case notYours
}

struct WatchedProduct: Equatable {
    var watch: Watch
    /// The product's price now.
    var price: Int64
    /// In the product's restock line.
    var restock = false
    /// A live restock hold of the user's (held keys are theirs until `until`).
    var hold: RestockHold?
}

/// restock_line.lua's answer: entries read, the last place read (where the next page starts), the live users.
struct RestockLinePage: Equatable {
    var read: Int
    var last: String?
    var users: [String]
}

struct WatcherPage: Equatable {
    /// Users read (a short page means the walk is over).
    var scanned: Int
    var watches: [Watch]
}

/// alert_claim.lua's answer.
enum AlertClaim: Equatable {
    case page(AlertPage)
    /// No page left to claim, but others' claims still run: ask again (a lapsed one is taken).
    case wait(ms: Int)
    /// Every page was sent: the alerts sent and the time since the job opened (Redis clock).
    case done(sent: Int, ms: Int)
    /// No such job (never opened, dropped when done, or expired).
    case gone
}

/// The open alert jobs' index (`StoreKeys.alertJobs`): members `<job>:<product>` (a job is hex,
/// so the first `:` ends it whatever the product id holds).
enum AlertJobs {
    static func entry(_ member: String) -> (product: String, job: String)? {
        guard let colon = member.firstIndex(of: ":") else { return nil }
        return (String(member[member.index(after: colon)...]), String(member[..<colon]))
    }
}

/// A claimed page of an alert job: its rank `start`, the lease it is held under, what it read.
struct AlertPage: Equatable {
    var start: Int
    var lease: Int64
    var scanned: Int
    var spec: String
    var watches: [Watch]
}

/// One price-drop alert: sent only if the watch is still `seen`, which becomes `after`.
struct PriceDropAlert: Equatable {
    var seen: Watch
    var after: Watch
    /// The alert's `data` JSON.
    var data: String
}

// MARK: Reply formats

extension GroupPublishOutcome: RedisReplyDecodable {
    /// group_publish.lua: {offset} or {-1, until} or {-2, retry after}.
    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        let first: Int64 = try reader.next()
        switch first {
        case -1: self = .muted(untilMs: try reader.next())
        case -2: self = .rateLimited(retryAfterMs: max(try reader.next(Int64.self), 1))
        default: self = .published(offset: first)
        }
    }
}

extension ProductUpdate: RedisReplyDecodable {
    /// product_update.lua: {0, previous, price, title, currency} or {-1} or {-2}.
    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        switch try reader.next(Int64.self) {
        case -1: self = .noProduct
        case -2: self = .notYours
        default:
            self = .updated(previous: try reader.next(), price: try reader.next(), title: try reader.next(),
                            currency: try reader.next(String?.self) ?? "")
        }
    }
}

/// product_view.lua: {fields, stock, buyers, watchers, held}.
struct ProductViewReply: RedisReplyDecodable {
    var view: ProductView?

    init(redisReply: RedisReply) throws(RedisDecodingError) {
        var reader = try RedisArrayReader(redisReply)
        let hash: RedisHash = try reader.next()
        let stock: Int64 = try reader.next(), buyers: Int64 = try reader.next(), watchers: Int64 = try reader.next()
        let held: Int64 = reader.isAtEnd ? 0 : try reader.next()
        view = ProductRecord(hash).map { ProductView(product: $0, stock: stock, buyers: buyers, watchers: watchers, held: held) }
    }
}

/// The watch record's one owner on the store side: CommunityCore's `Watch.record` for the
/// format, plus the template watch.lua fills with the price it reads.
enum WatchRecords {
    static let pricePlaceholder = "$PRICE"

    /// A new watch's record with the baseline (the price at watch time) left to the script.
    static func template(product: String, user: String, below: Int64?, expiresAt: Int64) -> String {
        let record = Watch(product: product, user: user, below: below, baseline: 0, expiresAt: expiresAt).record
        var fields = record.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        fields[1] = pricePlaceholder
        return fields.joined(separator: "|")
    }

    /// The record a template becomes at `price`.
    static func filled(_ template: String, price: Int64) -> String {
        template.replacingOccurrences(of: pricePlaceholder, with: String(price))
    }

    /// `{user, record, ...}` pairs into watches; a malformed record is skipped.
    static func decode(product: String, pairs: [String]) -> [Watch] {
        stride(from: 0, to: pairs.count - 1, by: 2).compactMap { Watch(product: product, user: pairs[$0], record: pairs[$0 + 1]) }
    }
}
