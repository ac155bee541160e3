import GatewayProtocol
import GatewayRedis

/// Redis names of the order core's records, and the ids that point at them.
///
/// Everything of one product's orders lives in the product's hash slot: product keys carry
/// the tag `{product:P}`, order-scoped keys the tag `{T}` where `T = SlotTag.for(key:
/// "product:P")` hashes to the same slot. Every id the order core mints carries its `T`
/// (`o-<T>-<random>`), so an order, payment, gift code or pay code routes to its slot with
/// no lookup, and one script touches an order and its product's stock. An id without a
/// valid `T` names nothing (its key functions return nil): it is simply not found.
enum CommerceKeys {
    /// The tag of the slot that `product`'s orders live in.
    static func tag(product: String) -> String { SlotTag.for(key: "product:\(product)") }

    /// `<prefix>-<T>-<random>` for a record of `product`'s orders.
    static func freshID(_ prefix: String, product: String, random: String) -> String {
        "\(prefix)-\(tag(product: product))-\(random)"
    }

    /// The `T` of an id minted by `freshID`, nil when the id has none.
    static func tag(ofID id: String) -> String? {
        let parts = id.split(separator: "-", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].isEmpty, SlotTag.isValid(parts[1]) else { return nil }
        return String(parts[1])
    }

    static func order(_ id: String) -> String? { tag(ofID: id).map { "gw:{\($0)}:order:\(id)" } }
    static func payment(_ id: String) -> String? { tag(ofID: id).map { "gw:{\($0)}:payment:\(id)" } }
    /// String: the key of the order the gift code belongs to.
    static func giftCode(_ code: String) -> String? { tag(ofID: code).map { "gw:{\($0)}:giftcode:\(code)" } }
    /// String: the key of the friend-pay order the pay code belongs to.
    static func payCode(_ code: String) -> String? { tag(ofID: code).map { "gw:{\($0)}:paycode:\(code)" } }
    /// String: the key of the order an `idempotency_key` made. Per (caller scope, buyer,
    /// product): `key` already starts with the caller's scope (`APICaller.idempotencyScope`).
    static func idempotency(product: String, buyer: String, key: String) -> String {
        "gw:{\(tag(product: product))}:idem:\(product):\(buyer):\(key)"
    }
    /// A counter written before a WAIT that vouches for an earlier write in this slot
    /// (`OrderStore.confirmExisting`): WAIT covers what came before on its connection.
    static func durabilityMark(product: String) -> String { "gw:{\(tag(product: product))}:durability-mark" }

    static func info(_ product: String) -> String { StoreKeys.productInfo(product) }
    static func stock(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):stock" }
    /// Hash key id -> sealed key (AES-GCM); ids are keyed fingerprints, so a key seen once is never added again.
    static func cardKeys(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):keys" }
    static func burned(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):burned" }
    /// Hash user -> number of orders that make the user a member of the product's group.
    static func members(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):members" }
    /// Stream of the pushes of this slot's decisions to channels in other slots (cluster only).
    static func outbox(_ product: String) -> String { StoreKeys.outbox(product) }
    /// Sorted set `<kind>:<order id>` by due time (ms); its own slot, written outside the decisions.
    static let timers = "gw:timers"

    /// The channel keys a push from a decision is published with (inline, one server).
    static func channelMeta(_ channel: Channel) -> String { StoreKeys.meta(channel) }
    static func channelLog(_ channel: Channel) -> String { StoreKeys.log(channel) }

    /// Fields the store adds to a saved order or payment: the keys of the records it points
    /// at, so the load script follows them without building a key name.
    enum Link {
        static let order = "link:order"
        static let payment = "link:payment"
        static let info = "link:info"
        static let stock = "link:stock"
    }
}
