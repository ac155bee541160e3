import GatewayProtocol
import GatewayRedis

/// Redis names of the order core's records, and the ids that point at them.
///
/// Everything of one product's orders lives in the product's hash slot: product keys carry
/// the tag `{product:P}`, order-scoped keys the tag `{T}` where `T = SlotTag.for(key:
/// "product:P")` hashes to the same slot. Every id the order core mints carries its `T`
/// (`o-<T>-<random>`), so an order, payment, gift code or pay code routes to its slot with
/// no lookup, and one script touches an order and its product's stock. An id without a
/// valid `T` names nothing (its key functions return nil): it is simply not found, unless
/// it is a v1 id (`o-<20 hex>`, see `Legacy`), which names its v1 record.
package enum CommerceKeys {
    /// The tag of the slot that `product`'s orders live in.
    static func tag(product: String) -> String { SlotTag.for(key: "product:\(product)") }

    /// `<prefix>-<T>-<random>` for a record of `product`'s orders.
    static func freshID(_ prefix: String, product: String, random: String) -> String {
        "\(prefix)-\(tag(product: product))-\(random)"
    }

    /// The id of a new payment of `order`, in the order's slot: it carries the order's tag.
    /// A v1 order (one server) gets a v1 payment id, so it names a v1 record beside its order.
    /// `random`: 20 hex digits. Nil for an id that names no order.
    package static func paymentID(forOrder order: String, random: String) -> String? {
        if let tag = tag(ofID: order) { return "pay-\(tag)-\(random)" }
        return Legacy.isID(order) ? "pay-\(random)" : nil
    }

    /// The `T` of an id minted by `freshID`, nil when the id has none.
    static func tag(ofID id: String) -> String? {
        // `<prefix>-<T>-<rest>`, rest not empty; found by index, as this runs for every key of every order call.
        let utf8 = id.utf8, dash = UInt8(ascii: "-")
        guard let first = utf8.firstIndex(of: dash) else { return nil }
        let start = utf8.index(after: first)
        guard let second = utf8[start...].firstIndex(of: dash), utf8.index(after: second) != utf8.endIndex else { return nil }
        let tag = id[start..<second]
        guard SlotTag.isValid(tag) else { return nil }
        return String(tag)
    }

    static func order(_ id: String) -> String? {
        tag(ofID: id).map { "gw:{\($0)}:order:\(id)" } ?? Legacy.order(id)
    }
    static func payment(_ id: String) -> String? {
        tag(ofID: id).map { "gw:{\($0)}:payment:\(id)" } ?? Legacy.payment(id)
    }
    /// String: the key of the order the gift code belongs to.
    static func giftCode(_ code: String) -> String? {
        tag(ofID: code).map { "gw:{\($0)}:giftcode:\(code)" } ?? Legacy.giftCode(code)
    }
    /// String: the key of the friend-pay order the pay code belongs to.
    static func payCode(_ code: String) -> String? {
        tag(ofID: code).map { "gw:{\($0)}:paycode:\(code)" } ?? Legacy.payCode(code)
    }
    /// String: the key of the order an `idempotency_key` made. Per (caller scope, buyer,
    /// product): `key` already starts with the caller's scope (`APICaller.idempotencyScope`).
    /// `/` is outside the id alphabet (`[A-Za-z0-9_.:-]`), so product and buyer cannot run
    /// into each other or into the key (which may itself hold `/`).
    static func idempotency(product: String, buyer: String, key: String) -> String {
        idempotency(tag: tag(product: product), product: product, buyer: buyer, key: key)
    }
    private static func idempotency(tag: String, product: String, buyer: String, key: String) -> String {
        "gw:{\(tag)}:idem/\(product)/\(buyer)/\(key)"
    }

    /// The names of one product a decision uses most, built once per program
    /// (`CommerceProgram`): its tag `T` (a CRC) and its stock and info keys.
    struct ProductNames {
        let product: String
        let tag: String
        let stock: String
        let info: String

        init(_ product: String) {
            self.product = product
            tag = CommerceKeys.tag(product: product)
            stock = CommerceKeys.stock(product)
            info = CommerceKeys.info(product)
        }

        /// `CommerceKeys.idempotency(product:buyer:key:)`.
        func idempotency(buyer: String, key: String) -> String {
            CommerceKeys.idempotency(tag: tag, product: product, buyer: buyer, key: key)
        }
    }
    /// A counter written before a WAIT that vouches for an earlier write in this slot
    /// (`confirmDurable(product:repeated: true)`): WAIT covers what came before on its connection.
    static func durabilityMark(product: String) -> String { "gw:{\(tag(product: product))}:durability-mark" }

    static func info(_ product: String) -> String { StoreKeys.productInfo(product) }
    static func stock(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):stock" }
    /// Hash key id -> sealed key (AES-GCM); ids are keyed fingerprints, so a key seen once is never added again.
    static func cardKeys(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):keys" }
    static func burned(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):burned" }
    /// Hash user -> number of orders that make the user a member of the product's group.
    static func members(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):members" }
    /// Hash user -> `RestockHold.record`: keys held for restock watchers (out of the stock list).
    static func holds(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):holds" }
    /// Sorted set user -> hold end (ms): what the release walks.
    static func holdsDue(_ product: String) -> String { "gw:\(StoreKeys.tag(.product(product))):holds:due" }
    /// Hash: a flash sale (4.8), in its product's slot (its fields: Store/README.md).
    static func sale(product: String, _ sale: String) -> String { "gw:\(StoreKeys.tag(.product(product))):sale:\(sale)" }
    /// List: the key ids set aside for the sale, not yet in an order.
    static func saleUnits(product: String, _ sale: String) -> String { CommerceKeys.sale(product: product, sale) + ":units" }
    /// Hash user -> units the user holds in the sale's orders (reserved or paid).
    static func saleBuyers(product: String, _ sale: String) -> String { CommerceKeys.sale(product: product, sale) + ":buyers" }
    /// String: the sale's product, in the sale's own slot (`sale.buy` and GET know only the sale).
    static func saleProduct(_ sale: String) -> String { "gw:\(StoreKeys.tag(.sale(sale))):product" }
    /// Stream of the pushes of this slot's decisions to channels in other slots (cluster only).
    static func outbox(_ product: String) -> String { StoreKeys.outbox(product) }
    static let eventsLog = StoreKeys.eventsLog
    /// Sorted set `<kind>:<order id>` by due time (ms); its own slot, written outside the decisions.
    static let timers = "gw:timers"

    /// The channel keys a push from a decision is published with (inline, one server).
    static func channelMeta(_ channel: Channel) -> String { StoreKeys.meta(channel) }
    static func channelLog(_ channel: Channel) -> String { StoreKeys.log(channel) }

    /// The record names of v1 (one Redis server, no slot tags), kept so an upgraded
    /// installation's orders keep working: an id of v1's form (`<prefix>-<20 hex>`) names
    /// its v1 record. `LegacyCommerceMigration` adds what the load script needs to them.
    /// On a cluster these names are never written (v1 never ran on one), so they are not found.
    enum Legacy {
        /// `o-`, `pay-`, `g-` or `f-` followed by 20 lowercase hex digits, as v1 minted them.
        static func isID(_ id: String) -> Bool {
            let parts = id.split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, ["o", "pay", "g", "f"].contains(parts[0]), parts[1].utf8.count == 20 else { return false }
            return parts[1].utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
        }
        static func order(_ id: String) -> String? { isID(id) ? "gw:{order:\(id)}:info" : nil }
        static func payment(_ id: String) -> String? { isID(id) ? "gw:{payment:\(id)}:info" : nil }
        /// String: the order id (v1), rewritten to the order's key by the migration.
        static func giftCode(_ code: String) -> String? { isID(code) ? "gw:giftcode:\(code)" : nil }
        static func payCode(_ code: String) -> String? { isID(code) ? "gw:paycode:\(code)" : nil }
        /// String: the order id; v1's idempotency keys were per (buyer, scoped key), not per product.
        static func idempotency(buyer: String, key: String) -> String { "gw:idem:{\(buyer)}:\(key)" }
        /// The set-once marker of the record format: absent in v1, `2` once migrated.
        static let schemaMarker = "gw:schema"
        static let schema = 2
    }

    /// Fields the store adds to a saved order or payment: the keys of the records it points
    /// at, so the load script follows them without building a key name.
    enum Link {
        static let order = "link:order"
        static let payment = "link:payment"
        static let info = "link:info"
        static let stock = "link:stock"
        /// The product's validity memberships (4.6); the load reads the owner's (or claimer's) record.
        static let memberships = "link:memberships"
        /// The product's holds: commerce_load reads the buyer's hold through it.
        static let holds = "link:holds"
    }
}
