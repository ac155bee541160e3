/// The documented range of every integer a client or the HTTP API sends (PROTOCOL.md 4.1:
/// outside it is `bad_request`). Checked when a command or body is decoded, so code past
/// the decoder may do arithmetic on these values without overflow checks.
public enum Ranges {
    /// A channel offset a client names (`reply_to`, `moderate.offset`; `since.offset` also
    /// takes 0). The Lua in Redis turns numbers into text with `%.14g`, so offsets (and
    /// offset + 1) must stay below 10^14 to reach a stream id as an exact integer: 10^13 - 1
    /// is a trillion times more publications than a channel keeps.
    public static let offset: ClosedRange<Int64> = 1...9_999_999_999_999
    public static let sinceOffset: ClosedRange<Int64> = 0...offset.upperBound
    /// Prices in minor units (`price`, `watch.below`); ten of them still fit the Lua limit above.
    public static let price: ClosedRange<Int64> = 0...1_000_000_000_000
    /// `watch.below`: a threshold is a positive price.
    public static let below: ClosedRange<Int64> = 1...price.upperBound
    /// Order amounts: `quantity` times a price.
    public static let amount: ClosedRange<Int64> = 0...price.upperBound * 10
    /// `moderate.seconds`: one second to a year.
    public static let moderateSeconds: ClosedRange<Int64> = 1...31_536_000
    public static let defaultMuteSeconds: Int64 = 3600
    /// Units of a flash sale (`quantity` of a sale and of `sale.buy`, `per_user`).
    public static let saleQuantity: ClosedRange<Int64> = 1...100_000
    /// `history.limit`.
    public static let historyLimit: ClosedRange<Int64> = 1...500
    /// Rows of an also-bought answer (WS `also_bought`, `GET /api/v1/products/{id}/also-bought`).
    public static let alsoBoughtLimit: ClosedRange<Int64> = 1...50
}
