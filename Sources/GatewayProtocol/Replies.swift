/// Builds reply frames. Publications are already-encoded push objects (as stored in
/// history), so they are spliced in as raw bytes instead of being parsed again.
public enum ReplyEncoder {
    public static func ok(id: Int64, _ result: JSON) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        out.append(contentsOf: #"{"id":"#.utf8)
        out.append(contentsOf: String(id).utf8)
        out.append(contentsOf: #","ok":"#.utf8)
        result.write(into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// An error reply; without an id for lines that had none.
    public static func error(id: Int64?, _ error: GatewayError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96)
        out.append(UInt8(ascii: "{"))
        if let id {
            out.append(contentsOf: #""id":"#.utf8)
            out.append(contentsOf: String(id).utf8)
            out.append(UInt8(ascii: ","))
        }
        out.append(contentsOf: #""error":"#.utf8)
        error.json.write(into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `{"id":..,"ok":{<fields>,"publications":[raw,...]}}` for subscribe, connect and history.
    public static func okWithPublications(id: Int64, fields: [(String, JSON)], publications: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + publications.reduce(0) { $0 + $1.count + 1 })
        out.append(contentsOf: #"{"id":"#.utf8)
        out.append(contentsOf: String(id).utf8)
        out.append(contentsOf: #","ok":{"#.utf8)
        for (key, value) in fields {
            appendJSONString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            value.write(into: &out)
            out.append(UInt8(ascii: ","))
        }
        out.append(contentsOf: #""publications":["#.utf8)
        for (i, p) in publications.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: p)
        }
        out.append(contentsOf: "]}}".utf8)
        return out
    }
}
