import CLibev
import GatewayCore

/// Measures each libev turn's busy time: from waking (a check watcher, right after
/// `epoll_wait` returns) to blocking again (a prepare watcher, just before the next wait).
/// That is how long every client of the node waited on one turn's work. It calls nothing
/// in lws, so lws' rule that its timers are re-armed only from its own callbacks holds.
final class TurnProbe {
    /// Busy time of every turn, in whole milliseconds (`gateway_loop_turn_seconds`).
    let turns = LatencyRecorder()
    /// The longest turn since the last reset (`gateway_loop_stall_max_seconds`).
    var longestTurn = 0.0
    private var wokeAt = 0.0
    private let prepare = UnsafeMutablePointer<ev_prepare>.allocate(capacity: 1)
    private let check = UnsafeMutablePointer<ev_check>.allocate(capacity: 1)

    init() {
        prepare.initialize(to: ev_prepare())
        check.initialize(to: ev_check())
    }

    deinit {
        prepare.deallocate()
        check.deallocate()
    }

    func start(_ loop: OpaquePointer) {
        let me = Unmanaged.passUnretained(self).toOpaque()
        clibev_check_start(loop, check, { _, watcher, _ in
            guard let data = watcher?.pointee.data else { return }
            Unmanaged<TurnProbe>.fromOpaque(data).takeUnretainedValue().wokeAt = monotonicSeconds()
        }, me)
        clibev_prepare_start(loop, prepare, { _, watcher, _ in
            guard let data = watcher?.pointee.data else { return }
            Unmanaged<TurnProbe>.fromOpaque(data).takeUnretainedValue().turnEnded(at: monotonicSeconds())
        }, me)
    }

    func stop(_ loop: OpaquePointer) {
        clibev_check_stop(loop, check)
        clibev_prepare_stop(loop, prepare)
    }

    private func turnEnded(at now: Double) {
        // The first prepare comes before any wake-up.
        guard wokeAt > 0 else { return }
        let busy = now - wokeAt
        longestTurn = max(longestTurn, busy)
        turns.record(ms: Int64(busy * 1_000))
    }
}
