// TEMPORARY copy on the wt-cluster branch: helper "commerce" owns HashSlot.swift; its version
// replaces this file at the merge (same API: `HashSlot.of(_:)`).

/// The Redis Cluster hash slot of a key: CRC16-XMODEM of the key (or of its `{tag}`, the
/// first non-empty text between the first `{` and the next `}`) modulo 16384.
public enum HashSlot {
    public static let count = 16_384

    public static func of(_ key: String) -> Int {
        let bytes = Array(key.utf8)
        var hashed = bytes[...]
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
           let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            hashed = bytes[(open + 1)..<close]
        }
        var crc: UInt16 = 0
        for byte in hashed {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return Int(crc) % count
    }
}
