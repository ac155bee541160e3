import GatewayProtocol

/// Carries out the hub's `.deliver` actions at most `budget` sends per loop turn, so one
/// publication to thousands of subscribers does not hold the loop: between slices the loop
/// answers HTTP requests and reads Redis replies. The caller runs `slice` when `add` says so
/// and, while `armed`, again from a zero-delay loop timer (`timerFired`).
///
/// Order: deliveries go out strictly in the order they were added, whatever their channel
/// or size: while earlier work waits, later work waits behind it, so a connection sees each
/// channel's pushes in offset order. Replies to a connection's own commands do not come
/// through here and may overtake queued pushes.
///
/// Targets are checked when their turn comes (`ChannelHub.stillReceives`): a connection that
/// unsubscribed or closed meanwhile gets nothing more, and one that subscribed meanwhile
/// gets the publication from its subscribe reply or recovery, not from here.
///
/// Budget: sends are counted since the last timer; once `budget` is reached the rest waits
/// for the timer, which starts a new count. With no timer armed the count carries over, so
/// steady light traffic yields to the loop once every `budget` sends.
///
/// Overload: past `backlogLimit` waiting sends a slice hands out everything, so the work
/// moves into the connections' send queues, whose limits (4008) bound it; the scheduler
/// itself never holds more than that.
///
/// Pure: it returns the sends and does no I/O.
public struct FanoutScheduler {
    public struct Send {
        public let payload: Payload
        public let conn: ConnectionID
    }

    struct Job {
        let payload: Payload
        let channel: Channel
        let targets: [ConnectionID]
        /// `ChannelHub.membershipVersion` when the hub decided this delivery.
        let decidedAt: UInt64
        var next = 0
    }

    public let budget: Int
    public let backlogLimit: Int
    /// Sends not yet handed out.
    public private(set) var waiting = 0
    private var jobs: [Job] = []
    private var head = 0
    /// Sends since the last timer.
    private var spent = 0
    /// A zero-delay timer is (to be) armed: new work waits for it.
    public private(set) var armed = false

    public init(budget: Int, backlogLimit: Int = 1_000_000) {
        self.budget = max(1, budget)
        self.backlogLimit = max(self.budget, backlogLimit)
    }

    /// Queues the hub's `.deliver(payload, to: targets, channel)` just returned by `hub`.
    /// True when the caller should run `slice` now; false while a timer is armed.
    public mutating func add(_ payload: Payload, to targets: [ConnectionID], _ channel: Channel, hub: ChannelHub) -> Bool {
        guard !targets.isEmpty else { return false }
        jobs.append(Job(payload: payload, channel: channel, targets: targets, decidedAt: hub.membershipVersion))
        waiting += targets.count
        return !armed || waiting > backlogLimit
    }

    /// The armed timer fired: a new turn, a new budget.
    public mutating func timerFired(_ hub: ChannelHub) -> [Send] {
        armed = false
        spent = 0
        return slice(hub)
    }

    /// The next sends, in order, up to what is left of the budget. Afterwards `armed` says
    /// whether the caller must arm a zero-delay timer and call `timerFired` from it.
    public mutating func slice(_ hub: ChannelHub) -> [Send] {
        let overloaded = waiting > backlogLimit
        // An overload slice may run while a timer is pending: that timer stays the only one.
        let timerPending = armed
        guard !timerPending || overloaded else { return [] }
        let budget = overloaded ? Int.max : self.budget
        var sends: [Send] = []
        while head < jobs.count && spent < budget {
            let job = jobs[head]
            // Nobody subscribed or left anywhere since the decision: every target still holds.
            let unchanged = hub.membershipVersion == job.decidedAt
            var i = job.next
            while i < job.targets.count && spent < budget {
                let conn = job.targets[i]
                i += 1
                if unchanged || hub.stillReceives(conn, job.channel, decidedAt: job.decidedAt) {
                    sends.append(Send(payload: job.payload, conn: conn))
                    spent += 1
                }
            }
            waiting -= i - job.next
            if i < job.targets.count {
                jobs[head].next = i
            } else {
                head += 1
            }
        }
        if head == jobs.count {
            jobs.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64 && head * 2 > jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        armed = timerPending || head < jobs.count
        return sends
    }
}
