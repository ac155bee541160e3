import Foundation
@testable import GatewayIO
import GatewayProtocol
import GatewayTestSupport
import XCTest

/// A real lws loop on a thread of its own, for work handed to it from other threads.
final class RunningLoop {
    let loop: EventLoop
    private let finished = DispatchSemaphore(value: 0)

    init() throws {
        loop = EventLoop(options: ListenOptions(host: "127.0.0.1", port: freePort(), maxFrame: 65_536, maxBody: 65_536, pingSeconds: 30))
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

final class EventLoopPostTests: XCTestCase {
    func testWorkPostedFromOtherThreadsRunsOnTheLoopInOrder() throws {
        let running = try RunningLoop()
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

    func testWorkPostedBeforeTheLoopRunsIsNotLost() throws {
        let loop = EventLoop(options: ListenOptions(host: "127.0.0.1", port: freePort(), maxFrame: 65_536, maxBody: 65_536, pingSeconds: 30))
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
