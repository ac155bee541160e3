import Foundation

/// Human formatting for progress lines and summaries.
enum Fmt {
    static func int<T: BinaryInteger>(_ v: T) -> String {
        let s = String(v.magnitude)
        var out = ""
        for (i, ch) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (v < 0 ? "-" : "") + out
    }

    static func num(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

    static func mib(_ bytes: Int?) -> String {
        guard let bytes else { return "?" }
        return String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }

    static func gib(_ bytes: Int) -> String { String(format: "%.1f GiB", Double(bytes) / 1_073_741_824) }

    static func kib(_ bytes: Double) -> String { String(format: "%.2f KiB", bytes / 1024) }

    /// Microseconds shown as milliseconds.
    static func ms(_ micros: UInt64) -> String { String(format: "%.2f ms", Double(micros) / 1000) }

    static func pct(_ v: Double?) -> String {
        guard let v else { return "?" }
        return String(format: "%.0f%%", v)
    }
}

/// One line per second while a scenario runs, prefixed with the elapsed time.
final class Progress: Sendable {
    let start = Clock.now()

    var elapsed: Double { Clock.now() - start }

    func line(_ phase: String, _ text: String) {
        let head = String(format: "[%4.0fs]", elapsed)
        print("\(head) \(phase.padding(toLength: 7, withPad: " ", startingAt: 0)) \(text)")
        fflush(nil)
    }

    func note(_ text: String) {
        print(text)
        fflush(nil)
    }
}

/// Paces a loop to one iteration per `interval` without drifting.
struct Ticker {
    let interval: Double
    private var next: Double

    init(interval: Double) {
        self.interval = interval
        next = Clock.now() + interval
    }

    mutating func wait() {
        Clock.sleep(until: next)
        Children.haltIfInterrupted()
        next += interval
        if next < Clock.now() { next = Clock.now() + interval }
    }
}
