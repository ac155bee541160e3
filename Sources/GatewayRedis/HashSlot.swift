/// The Redis Cluster hash slot of a key: CRC16-XMODEM of the key (or of its hash tag) mod 16384,
/// exactly as Redis computes it, so the node routes a call to the master that owns its key
/// and can put keys that one script touches into one slot on purpose.
public enum HashSlot {
    public static let count = 16_384

    /// The slot of `key`. A hash tag is the part between the first `{` and the next `}`
    /// when that part is not empty; otherwise the whole key is hashed (`foo{}{bar}`).
    public static func of(_ key: String) -> Int {
        // Straight over the string's own UTF-8 (no copy): key functions call this per record.
        if let slot = key.utf8.withContiguousStorageIfAvailable({ of(buffer: $0) }) { return slot }
        return of(bytes: Array(key.utf8))
    }

    public static func of(bytes key: [UInt8]) -> Int {
        key.withUnsafeBufferPointer { of(buffer: $0) }
    }

    static func of(buffer key: UnsafeBufferPointer<UInt8>) -> Int {
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
           let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            return Int(crc16(key[(open + 1)..<close]) % UInt16(count))
        }
        return Int(crc16(key[...]) % UInt16(count))
    }

    static func crc16(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes { crc = crcStep(crc, byte) }
        return crc
    }

    /// `keys` in groups of one slot each, in slot order (each group keeps the given order):
    /// Redis Cluster refuses a multi-key command, SSUBSCRIBE included, across slots (CROSSSLOT).
    public static func groupedBySlot(_ keys: [String]) -> [[String]] {
        var groups: [Int: [String]] = [:]
        for key in keys { groups[of(key), default: []].append(key) }
        return groups.sorted { $0.key < $1.key }.map(\.value)
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
    public static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes { crc = crcStep(crc, byte) }
        return crc
    }

    /// The CRC of a string extended by one byte, from the CRC of the string.
    @inline(__always)
    static func crcStep(_ crc: UInt16, _ byte: UInt8) -> UInt16 {
        (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
    }

    private static let table: [UInt16] = (0..<256).map { i -> UInt16 in
        var crc = UInt16(i) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}
