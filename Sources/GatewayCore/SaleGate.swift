/// The node's door to a flash sale's buy script (contract 4.8). At the open thousands of
/// `sale.buy` arrive within milliseconds; every one sent at once would queue on the one Redis
/// shard holding the sale and stretch every answer. So per sale at most `inFlight` buys run
/// at a time, the rest wait in arrival order, and once Redis answers "sold out" the node
/// answers the waiting and new buys itself for `soldOutMs` (units can come back: an unpaid
/// order expiring, so the window is short, and a `sale.stock` with units ends it at once).
///
/// Pure: the caller passes the time (ms) and does what the returned actions say.
public struct SaleGate<Ticket> {
    public enum Action {
        /// Send this buy to Redis now.
        case start(Ticket)
        /// Answer `conflict` "sold out" without asking Redis.
        case soldOut(Ticket)
        /// Answer `unavailable` (temporary): the sale's queue on this node is full.
        case busy(Ticket)
    }

    public static var defaultSoldOutMs: Int64 { 250 }

    public let inFlight: Int
    public let maxQueued: Int
    public let soldOutMs: Int64

    private struct Door {
        var running = 0
        var queue: [Ticket] = []
        /// Index of the next queued ticket (the array is compacted when drained).
        var head = 0
        var soldOutUntil: Int64 = .min

        var queued: Int { queue.count - head }
        var idle: Bool { running == 0 && queued == 0 }
    }

    private var doors: [String: Door] = [:]
    /// Idle doors kept only for their sold-out window: purged once it passed, so a sale sold
    /// out and never asked again leaves nothing behind.
    private var windows: Set<String> = []

    public init(inFlight: Int, maxQueued: Int, soldOutMs: Int64 = Self.defaultSoldOutMs) {
        self.inFlight = max(1, inFlight)
        self.maxQueued = max(0, maxQueued)
        self.soldOutMs = soldOutMs
    }

    /// Sales with buys running or waiting (idle ones are forgotten, unless inside a sold-out window).
    public var sales: Int { doors.count }

    public func running(_ sale: String) -> Int { doors[sale]?.running ?? 0 }
    public func queued(_ sale: String) -> Int { doors[sale]?.queued ?? 0 }

    /// A buy of `sale` arrives. nil: it waits; a later `finished` or `stock` starts or refuses it.
    public mutating func arrive(_ sale: String, _ ticket: Ticket, now: Int64) -> Action? {
        purge(now: now)
        var door = takeDoor(sale) ?? Door()
        defer { store(sale, door, now: now) }
        if now < door.soldOutUntil { return .soldOut(ticket) }
        door.soldOutUntil = .min
        if door.running < inFlight && door.queued == 0 {
            door.running += 1
            return .start(ticket)
        }
        guard door.queued < maxQueued else { return .busy(ticket) }
        door.queue.append(ticket)
        return nil
    }

    /// A started buy of `sale` was answered; `soldOut`: Redis said none are left. Every
    /// started buy is finished exactly once.
    public mutating func finished(_ sale: String, soldOut: Bool, now: Int64) -> [Action] {
        purge(now: now)
        guard var door = takeDoor(sale) else { return [] }
        defer { store(sale, door, now: now) }
        if door.running > 0 { door.running -= 1 }
        if soldOut {
            door.soldOutUntil = now + soldOutMs
            return drain(&door).map { .soldOut($0) }
        }
        return startQueued(&door)
    }

    /// The node saw `sale.stock` on `sale:<id>`: units are back (remaining > 0) ends a
    /// sold-out window at once.
    public mutating func stock(_ sale: String, remaining: Int, now: Int64) -> [Action] {
        guard remaining > 0, var door = takeDoor(sale) else { return [] }
        defer { store(sale, door, now: now) }
        door.soldOutUntil = .min
        return startQueued(&door)
    }

    private func startQueued(_ door: inout Door) -> [Action] {
        var actions: [Action] = []
        while door.running < inFlight, door.queued > 0 {
            actions.append(.start(door.queue[door.head]))
            door.head += 1
            door.running += 1
        }
        if door.queued == 0 {
            door.queue.removeAll(keepingCapacity: false)
            door.head = 0
        }
        return actions
    }

    private func drain(_ door: inout Door) -> [Ticket] {
        let waiting = Array(door.queue[door.head...])
        door.queue = []
        door.head = 0
        return waiting
    }

    /// The door taken out of the dictionary while it changes: a copy left behind would make
    /// every append copy the whole queue (thousands of waiting buys at an open: O(n^2)).
    private mutating func takeDoor(_ sale: String) -> Door? { doors.removeValue(forKey: sale) }

    private mutating func store(_ sale: String, _ door: Door, now: Int64) {
        if door.idle && now >= door.soldOutUntil {
            doors[sale] = nil
        } else {
            doors[sale] = door
        }
        if door.idle && now < door.soldOutUntil { windows.insert(sale) } else { windows.remove(sale) }
    }

    private mutating func purge(now: Int64) {
        for sale in windows where (doors[sale]?.soldOutUntil ?? .min) <= now {
            windows.remove(sale)
            if let door = doors[sale], door.idle { doors[sale] = nil }
        }
    }
}

extension SaleGate.Action: Equatable where Ticket: Equatable {}
