import GatewayProtocol

/// A WebSocket frame of the gateway holds one or more JSON objects separated by `\n`
/// (PROTOCOL 2): each is handed on parsed, or nil when it is not JSON (counted as unexpected).
enum JSONLines {
    static func each(_ bytes: [UInt8], _ body: (JSON?) -> Void) {
        bytes.withUnsafeBytes { raw in
            var start = 0
            while start < raw.count {
                var end = start
                while end < raw.count && raw[end] != 0x0A { end += 1 }
                if end > start { body(try? JSON.parse(UnsafeRawBufferPointer(rebasing: raw[start..<end]))) }
                start = end + 1
            }
        }
    }
}
