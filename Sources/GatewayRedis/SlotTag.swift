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
        // A tag is base-36 digits only (no braces), so its slot is the CRC of all of it.
        guard (1...maxLength).contains(tag.utf8.count) else { return false }
        var crc: UInt16 = 0
        var packed: UInt32 = 0
        for byte in tag.utf8 {
            guard isDigit(byte) else { return false }
            crc = HashSlot.crcStep(crc, byte)
            packed = packed << 8 | UInt32(byte)
        }
        return packedTable[Int(crc % UInt16(HashSlot.count))] == packed
    }

    /// `table` with each tag's bytes packed into one integer (no byte is 0), for `isValid`,
    /// which runs for every id an order call names.
    private static let packedTable: [UInt32] = table.map { $0.utf8.reduce(0) { $0 << 8 | UInt32($1) } }

    @inline(__always)
    private static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
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
