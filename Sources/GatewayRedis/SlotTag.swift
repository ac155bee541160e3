/// The shortest base-36 string (`0-9a-z`) that hashes to a given slot, used as the hash tag
/// `{T}` of keys that must live in the slot of another key: an order's keys carry the tag
/// of its product's slot, so one script touches the order and the product's stock, and ids
/// minted with the tag in them (`o-<T>-<random>`) route to their slot with no lookup.
public enum SlotTag {
    /// The tag of `slot` (0..<16384).
    public static func of(slot: Int) -> String { table[slot] }

    /// The tag whose slot is the slot of `key` (`SlotTag.for(key: "product:p1")`).
    public static func `for`(key: String) -> String { table[HashSlot.of(key)] }

    /// True when `tag` is the tag this type hands out for its slot: anything else (a
    /// made-up or mangled id) is no tag, and what it names is simply not found.
    public static func isValid<S: StringProtocol>(_ tag: S) -> Bool {
        guard (1...maxLength).contains(tag.utf8.count),
              tag.utf8.allSatisfy({ digits.contains($0) }) else { return false }
        let text = String(tag)
        return table[HashSlot.of(text)] == text
    }

    static let maxLength = 4
    private static let digits: [UInt8] = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)

    /// Every slot's tag, computed once: all strings of length 1, then 2, ... in order until
    /// each slot has one (length 4 covers every slot). The CRC is carried from a prefix to
    /// its extensions, so each candidate costs one table step.
    private static let table: [String] = {
        var tags = [String?](repeating: nil, count: HashSlot.count)
        var missing = HashSlot.count
        var prefix: [UInt8] = []
        func visit(_ crc: UInt16, depth: Int, length: Int) {
            for d in digits {
                let next = HashSlot.crcStep(crc, d)
                prefix.append(d)
                if depth + 1 == length {
                    let slot = Int(next % UInt16(HashSlot.count))
                    if tags[slot] == nil {
                        tags[slot] = String(decoding: prefix, as: UTF8.self)
                        missing -= 1
                    }
                } else {
                    visit(next, depth: depth + 1, length: length)
                }
                prefix.removeLast()
                if missing == 0 { return }
            }
        }
        var length = 1
        while missing > 0 && length <= maxLength {
            visit(0, depth: 0, length: length)
            length += 1
        }
        precondition(missing == 0, "every slot has a base-36 tag of at most \(maxLength) characters")
        return tags.map { $0! }
    }()
}
