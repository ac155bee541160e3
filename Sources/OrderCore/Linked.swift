/// A record reached through a link field of the order (`link:holds`, `link:memberships`).
/// An order saved by an older version has no link: that is not the same as "no record",
/// and the rules add no check for what they cannot see.
/// (Not `none`/`some`: those read as Optional's cases and draw compiler warnings.)
public enum Linked<Value: Equatable & Sendable>: Equatable, Sendable {
    case notLinked
    case absent
    case present(Value)
}
