import CLibev
import Foundation
@testable import GatewayIO
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// A real lws loop on a thread of its own, for work handed to it from other threads.
final class RunningLoop {
    let loop: EventLoop
    private let finished = DispatchSemaphore(value: 0)

    init(_ backend: EventLoopBackend = .epoll) throws {
        loop = EventLoop(options: .testing(backend))
        try loop.start()
        let loop = loop
        let finished = finished
        Thread { loop.run(); finished.signal() }.start()
    }

    func stop() {
        loop.post { [loop] in loop.stop() }
        XCTAssertEqual(finished.wait(timeout: .now() + 30), .success, "the loop stopped")
    }
}

extension ListenOptions {
    static func testing(_ backend: EventLoopBackend) -> ListenOptions {
        var options = ListenOptions(host: "127.0.0.1", port: freePort(), maxFrame: 65_536, maxBody: 65_536, pingSeconds: 30)
        options.eventLoop = backend
        return options
    }
}

/// The loop's cross-thread and timer rules, on both backends (`server.event_loop`).
final class EventLoopPostTests: XCTestCase {
    /// Runs `body` once per backend.
    private func onEachBackend(_ body: (EventLoopBackend) throws -> Void) rethrows {
        for backend in [EventLoopBackend.epoll, .poll] {
            try body(backend)
        }
    }

    func testRunsOnTheBackendAskedFor() throws {
        try onEachBackend { backend in
            let running = try RunningLoop(backend)
            defer { running.stop() }
            XCTAssertEqual(running.loop.backend, backend, "is the libev plugin (libwebsockets-evlib-ev) installed?")
        }
    }

    func testWorkPostedFromOtherThreadsRunsOnTheLoopInOrder() throws {
        try onEachBackend { backend in
            let running = try RunningLoop(backend)
            defer { running.stop() }
            let loop = running.loop
            final class Seen: @unchecked Sendable {
                var byPoster: [Int: [Int]] = [:]
                var threads = Set<UInt>()
            }
            let lock = NSLock()
            let seen = Seen()
            let done = DispatchSemaphore(value: 0)
            let posters = 4, each = 200
            for p in 0..<posters {
                Thread {
                    for i in 0..<each {
                        loop.post {
                            lock.lock()
                            seen.byPoster[p, default: []].append(i)
                            seen.threads.insert(UInt(pthread_self()))
                            let all = seen.byPoster.values.reduce(0) { $0 + $1.count } == posters * each
                            lock.unlock()
                            if all { done.signal() }
                        }
                    }
                }.start()
            }
            XCTAssertEqual(done.wait(timeout: .now() + 30), .success, "every posted body ran")
            lock.lock()
            defer { lock.unlock() }
            for p in 0..<posters { XCTAssertEqual(seen.byPoster[p], Array(0..<each), "poster \(p)'s work in the order posted") }
            XCTAssertEqual(seen.threads.count, 1, "all on one thread")
        }
    }

    func testWorkPostedBeforeTheLoopRunsIsNotLost() throws {
        try onEachBackend { backend in
            let loop = EventLoop(options: .testing(backend))
            let ran = DispatchSemaphore(value: 0)
            loop.post { ran.signal() }
            try loop.start()
            let finished = DispatchSemaphore(value: 0)
            Thread { loop.run(); finished.signal() }.start()
            XCTAssertEqual(ran.wait(timeout: .now() + 30), .success)
            loop.post { loop.stop() }
            XCTAssertEqual(finished.wait(timeout: .now() + 30), .success)
        }
    }

    /// libev arms lws' timer only after lws' first io event: a loop that has seen no
    /// socket activity must still run its timers.
    func testATimerFiresOnALoopThatHasHadNoIO() throws {
        try onEachBackend { backend in
            let loop = EventLoop(options: .testing(backend))
            try loop.start()
            let fired = DispatchSemaphore(value: 0)
            loop.schedule(afterMs: 50) { fired.signal() }
            let finished = DispatchSemaphore(value: 0)
            Thread { loop.run(); finished.signal() }.start()
            XCTAssertEqual(fired.wait(timeout: .now() + 10), .success, "the timer fired")
            loop.stop()
            XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
        }
    }

    /// Timers set from a timer keep firing (the tick re-arms itself this way).
    func testTimersSetFromTimersKeepFiring() throws {
        try onEachBackend { backend in
            let running = try RunningLoop(backend)
            defer { running.stop() }
            let loop = running.loop
            let done = DispatchSemaphore(value: 0)
            final class Count: @unchecked Sendable { var n = 0 }
            let count = Count()
            func again() {
                loop.schedule(afterMs: 5) {
                    count.n += 1
                    if count.n == 20 { done.signal() } else { again() }
                }
            }
            loop.post { again() }
            XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "fired \(count.n) of 20")
        }
    }

    /// `stop()` called on another thread (a signal handler's thread, a test) ends `run()`.
    func testStopFromAnotherThreadEndsTheRun() throws {
        try onEachBackend { backend in
            let loop = EventLoop(options: .testing(backend))
            try loop.start()
            let finished = DispatchSemaphore(value: 0)
            Thread { loop.run(); finished.signal() }.start()
            let ran = DispatchSemaphore(value: 0)
            loop.post { ran.signal() }
            XCTAssertEqual(ran.wait(timeout: .now() + 10), .success)
            loop.stop()
            XCTAssertEqual(finished.wait(timeout: .now() + 10), .success, "run() returned")
        }
    }

    /// A short timer set from an io callback while a descriptor stays ready turn after turn
    /// fires at once. (lws' own timer on libev would wait for the one lws had armed, the
    /// 250 ms tick: lws re-arms it from an idle watcher, which never runs while io is pending.)
    func testAZeroDelayTimerSetWhileTheLoopIsBusyFiresAtOnce() throws {
        let running = try RunningLoop(.epoll)
        defer { running.stop() }
        let loop = running.loop
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        defer { close(ends[0]); close(ends[1]) }
        XCTAssertEqual(write(ends[1], "x", 1), 1)
        let busy = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
        busy.initialize(to: ev_io())
        defer { busy.deallocate() }
        let started = DispatchSemaphore(value: 0)
        loop.post {
            clibev_read_start(loop.evLoop, busy, ends[0]) { _, _, _ in }
            started.signal()
        }
        XCTAssertEqual(started.wait(timeout: .now() + 10), .success)
        final class Delays: @unchecked Sendable { var seconds: [Double] = [] }
        let delays = Delays()
        let fired = DispatchSemaphore(value: 0)
        for _ in 0..<9 {
            loop.post {
                let set = monotonicSeconds()
                loop.schedule(afterMs: 0) {
                    delays.seconds.append(monotonicSeconds() - set)
                    fired.signal()
                }
            }
            guard fired.wait(timeout: .now() + 2) == .success else { break }
            usleep(10_000)
        }
        let stopped = DispatchSemaphore(value: 0)
        loop.post {
            clibev_io_stop(loop.evLoop, busy)
            stopped.signal()
        }
        XCTAssertEqual(stopped.wait(timeout: .now() + 10), .success)
        guard delays.seconds.count == 9 else { return XCTFail("only \(delays.seconds.count) of 9 timers fired") }
        let median = delays.seconds.sorted()[delays.seconds.count / 2]
        XCTAssertLessThan(median, 0.05, "median delay of a 0 ms timer: \(median) s, all \(delays.seconds)")
    }
}
