/// `GET /api/v1/products/{id}/also-bought?limit=N` (contract 4.6): how many rows.
public enum AlsoBoughtQuery {
    public static let defaultLimit = 5

    /// The `limit` parameter (others are ignored): absent is the default; given twice,
    /// empty, not a number or outside `Ranges.alsoBoughtLimit` is `bad_request`.
    public static func limit(_ query: String) -> Result<Int, GatewayError> {
        var limit: Int?
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let nameValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard nameValue[0] == "limit" else { continue }
            let range = Ranges.alsoBoughtLimit
            guard limit == nil else { return .failure(.badRequest("limit given twice")) }
            let value = nameValue.count > 1 ? nameValue[1] : ""
            guard value.count <= 2, value.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(value),
                  range.contains(Int64(n)) else {
                return .failure(.badRequest("limit must be \(range.lowerBound) to \(range.upperBound)"))
            }
            limit = n
        }
        return .success(limit ?? defaultLimit)
    }
}
