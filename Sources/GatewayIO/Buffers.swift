/// A small FIFO without per-operation allocation: the send queue of every connection.
public struct FIFO<Element> {
    private var items: ContiguousArray<Element> = []
    private var head = 0

    public init() {}

    public var isEmpty: Bool { head == items.count }
    public var count: Int { items.count - head }

    public mutating func append(_ e: Element) { items.append(e) }

    public func peek() -> Element? { head < items.count ? items[head] : nil }

    public mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let e = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: items.capacity <= 64)
            head = 0
        } else if head >= 64 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return e
    }

    public mutating func removeAll() {
        items = []
        head = 0
    }
}
