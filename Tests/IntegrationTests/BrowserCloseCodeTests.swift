import Foundation
import GatewayProtocol
import XCTest

/// The browser client and 4029 (too many connections of this user): it backs off, at
/// least the server's `retry_after_ms`, and then reconnects instead of giving up.
extension BrowserTests {
    func testTooManyConnectionsBacksOffAndReconnects() throws {
        let node = try startNode("n1")
        let page = try openClientPage(node, "4029")
        let result = try page.evaluate("""
            (async () => {
              const t = window.t, fakes = [], delays = [];
              \(Self.fakeSocketClass)
              const until = async (f, what) => { for (let i = 0; i < 500; i++) { const v = f(); if (v) return v; await t.sleep(10) }
                                                 throw new Error('timed out waiting for ' + what) };
              const connectOf = (fake) => until(() => fake.sent.find((m) => m.op === 'connect'), 'connect');
              const c = t.client = t.watch(new t.m.GatewayClient('ws://fake/ws', { token: 'x', WebSocket: Fake,
                commandTimeout: 2000, backoff: { base: 10, cap: 20 } }));
              c.addEventListener('reconnect_scheduled', (e) => delays.push(e.detail.delay));
              c.connect();
              // The connect is refused (rate_limited, retry_after_ms), then 4029 follows.
              const c1 = await connectOf(fakes[0]);
              fakes[0].frame({ id: c1.id, error: { code: 'rate_limited', message: 'more than 20 connections of this user',
                                                   temporary: true, retry_after_ms: 300 } });
              fakes[0].serverClose(4029, 'too many');
              const stateAfterRefusal = c.state;
              // A 4029 close on its own also backs off (at least 1 s), never gives up.
              const c2 = await connectOf(await until(() => fakes[1], 'a second socket'));
              fakes[1].serverClose(4029, 'too many');
              const c3 = await connectOf(await until(() => fakes[2], 'a third socket'));
              fakes[2].frame({ id: c3.id, ok: { user: 'u', channel: 'user:u', offset: 0, epoch: 'e', recovered: true, publications: [] } });
              await until(() => c.state === 'open', 'open');
              return { delays, stateAfterRefusal, closed: t.closed, state: c.state, sockets: fakes.length };
            })()
            """, timeout: 30)
        let delays = result["delays"]?.arrayValue?.compactMap(\.intValue) ?? []
        XCTAssertEqual(delays.count, 2, "\(result)")
        XCTAssertGreaterThanOrEqual(delays.first ?? 0, 300, "waits at least retry_after_ms: \(result)")
        XCTAssertGreaterThanOrEqual(delays.last ?? 0, 1000, "a bare 4029 waits at least a second: \(result)")
        XCTAssertEqual(result["stateAfterRefusal"]?.stringValue, "reconnecting", "\(result)")
        XCTAssertEqual(result["closed"]?.arrayValue?.count, 0, "4029 is not final: \(result)")
        XCTAssertEqual(result["state"]?.stringValue, "open", "\(result)")
        XCTAssertEqual(result["sockets"]?.intValue, 3, "\(result)")
    }
}
