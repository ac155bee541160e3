import GatewayProtocol
import XCTest

final class HTTPTargetTests: XCTestCase {
    func target(_ url: String) -> HTTPTarget? { try? HTTPTarget(url) }

    func testSchemesHostsPortsAndPaths() throws {
        let a = try HTTPTarget("https://Hooks.Example.com/shop/events?x=1")
        XCTAssertEqual([a.isTLS ? "tls" : "plain", a.host, String(a.port), a.requestTarget, a.hostHeader],
                       ["tls", "hooks.example.com", "443", "/shop/events?x=1", "hooks.example.com"])
        let b = try HTTPTarget("http://127.0.0.1:8080")
        XCTAssertEqual([b.host, String(b.port), b.requestTarget, b.hostHeader, b.origin],
                       ["127.0.0.1", "8080", "/", "127.0.0.1:8080", "http://127.0.0.1:8080"])
        XCTAssertFalse(b.isTLS)
        XCTAssertEqual(target("HTTP://h?q=1")?.requestTarget, "/?q=1")
        XCTAssertEqual(target("http://h:80/")?.hostHeader, "h")
        XCTAssertEqual(target("http://shop_app:3000/hook")?.host, "shop_app")
        let v6 = try HTTPTarget("https://[::1]:8443/hook")
        XCTAssertEqual([v6.host, String(v6.port), v6.hostHeader], ["::1", "8443", "[::1]:8443"])
        XCTAssertEqual(target("https://[2001:DB8::1]/")?.hostHeader, "[2001:db8::1]")
    }

    func testOriginLeavesOutThePathAndQuery() throws {
        XCTAssertEqual(try HTTPTarget("https://h.example/hook?token=s3cret").origin, "https://h.example")
    }

    func testRefusesWhatCannotBeSentOrShouldNotBe() {
        for bad in ["", "hooks.example.com", "ftp://h/", "http://", "http:///path", "http://user:pw@h/", "http://u@h",
                    "http://h/#frag", "http://h/a b", "http://h/\u{e9}", "http://h:0/", "http://h:65536/", "http://h:/",
                    "http://h:8o/", "http://h:+80/", "http://-h/", "http://h..example/", "http://h%41/", "http://[::1/",
                    "http://[::1]x/", "http://[zz]/", "http://h\t/", "http://h/\n", "https://a.b:443:1/"] {
            XCTAssertNil(target(bad), bad)
        }
        XCTAssertEqual(try? HTTPTarget("http://user:pw@h/").origin, nil)
        do {
            _ = try HTTPTarget("http://user:pw@h/")
            XCTFail("accepted")
        } catch {
            XCTAssertFalse(error.description.contains("pw"), "the refusal does not repeat the credentials")
        }
    }
}

final class HTTPResponseReaderTests: XCTestCase {
    /// Feeds `text` in pieces of `piece` bytes; the step after the last piece (or the first final one).
    func read(_ text: String, piece: Int = .max, close: Bool = false) -> HTTPResponseReader.Step {
        var reader = HTTPResponseReader()
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + piece)
            let step = reader.feed(Array(bytes[i..<end]))
            if step != .more { return step }
            i = end
        }
        return close ? reader.peerClosed() : .more
    }

    func testContentLengthAnswerEndsAndTheConnectionIsReusable() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
        for piece in [1, 3, 7, 1000] {
            XCTAssertEqual(read(text, piece: piece), .answered(status: 200, reusable: true), "piece \(piece)")
        }
        XCTAssertEqual(read("HTTP/1.1 500 Internal\r\ncontent-length: 0\r\n\r\n"), .answered(status: 500, reusable: true))
        XCTAssertEqual(read("HTTP/1.1 204 No Content\r\n\r\n"), .answered(status: 204, reusable: true))
        XCTAssertEqual(read("HTTP/1.1 200 OK\nContent-Length: 2\n\nok", piece: 1), .answered(status: 200, reusable: true), "bare LF")
    }

    func testIncompleteBodyWaitsForMore() {
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"), .more)
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"), .more)
    }

    func testChunkedAnswer() {
        let text = "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
        for piece in [1, 4, 1000] {
            XCTAssertEqual(read(text, piece: piece), .answered(status: 202, reusable: true), "piece \(piece)")
        }
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), .more)
    }

    func testConnectionCloseAndHTTP10AreNotReused() {
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n"), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"), .answered(status: 200, reusable: true))
    }

    func testBodyWithoutLengthCountsOnceTheHeadersAreIn() {
        // Its end is a close the receiver may never make: not waited for.
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\n\r\n"), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\n\r\nsome body", piece: 3), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\n\r\nsome body", close: true), .answered(status: 200, reusable: false))
    }

    func testATimeoutAfterTheHeadersStillGivesTheStatus() {
        var reader = HTTPResponseReader()
        XCTAssertEqual(reader.feed(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel".utf8)), .more)
        XCTAssertEqual(reader.timedOut(), .answered(status: 200, reusable: false), "the body is late, the answer is in")
        var inHead = HTTPResponseReader()
        XCTAssertEqual(inHead.feed(Array("HTTP/1.1 200 OK\r\nContent-".utf8)), .more)
        guard case .malformed = inHead.timedOut() else { return XCTFail("headers cut short have no status") }
        var silent = HTTPResponseReader()
        guard case .malformed = silent.timedOut() else { return XCTFail("no byte, no status") }
    }

    func testBodiesPastTheLimitAreNotReadToTheEnd() {
        let big = HTTPResponseReader.bodyLimit + 1
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nContent-Length: \(big)\r\n\r\n"), .answered(status: 200, reusable: false))
        let filler = String(repeating: "x", count: big)
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\n\r\n" + filler), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(String(big, radix: 16))\r\n"),
                       .answered(status: 200, reusable: false))
    }

    func testOnceTheStatusIsKnownItCountsEvenIfTheRestIsBroken() {
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel", close: true), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), .answered(status: 200, reusable: false))
        XCTAssertEqual(read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"), .answered(status: 200, reusable: false))
    }

    func testInterimAnswersAreSkipped() {
        XCTAssertEqual(read("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", piece: 5),
                       .answered(status: 201, reusable: true))
    }

    func testGarbageAndEarlyClosesHaveNoStatus() {
        for bad in ["HTTP/2 200\r\n\r\n", "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 600 X\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n folded\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 101 Switching\r\n\r\n"] {
            guard case .malformed = read(bad) else { return XCTFail(bad) }
        }
        guard case .malformed = read("", close: true) else { return XCTFail("closed before any byte") }
        guard case .malformed = read("HTTP/1.1 200 OK\r\nContent-", close: true) else { return XCTFail("closed in the head") }
        guard case .malformed = read("HTTP/1.1 200 OK\r\n" + String(repeating: "X-A: b\r\n", count: 3000)) else {
            return XCTFail("endless headers")
        }
    }

    /// Mutated answers (a seeded generator, so a failure repeats) never trap, and where the
    /// reads split them never changes the outcome.
    func testMutatedAnswersGiveTheSameStepHoweverTheyAreSplit() {
        let seeds = [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 500 E\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        ].map { Array($0.utf8) }
        let alphabet = Array("HTTP/1.0 2:\r\n;-aF\t".utf8) + [0, 255]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        for _ in 0..<5_000 {
            var input = seeds[next(seeds.count)]
            for _ in 0..<(1 + next(4)) {
                let at = next(input.count + 1)
                switch next(3) {
                case 0 where at < input.count: input.remove(at: at)
                case 1: input.insert(alphabet[next(alphabet.count)], at: at)
                default: if at < input.count { input[at] = alphabet[next(alphabet.count)] }
                }
            }
            /// The step, and whether it came before the last piece (bytes past the end of
            /// an answer that a later read would bring: seen by the idle check, not here).
            func run(_ pieces: [ArraySlice<UInt8>]) -> (HTTPResponseReader.Step, early: Bool) {
                var reader = HTTPResponseReader()
                for (n, piece) in pieces.enumerated() {
                    let step = reader.feed(Array(piece))
                    if step != .more { return (step, n < pieces.count - 1) }
                }
                return (reader.peerClosed(), false)
            }
            var pieces: [ArraySlice<UInt8>] = []
            var i = 0
            while i < input.count {
                let n = 1 + next(7)
                pieces.append(input[i..<min(input.count, i + n)])
                i += n
            }
            let (whole, _) = run([input[...]])
            let (split, early) = run(pieces)
            switch (whole, split) {
            case (.malformed, .malformed): break
            case (.answered(let a, false), .answered(let b, true)) where early: XCTAssertEqual(a, b)
            default: XCTAssertEqual(whole, split, String(decoding: input, as: UTF8.self))
            }
        }
    }

    func testSawBytesTellsWhetherAnyAnswerArrived() {
        var reader = HTTPResponseReader()
        XCTAssertFalse(reader.sawBytes)
        _ = reader.feed([UInt8]("HTTP/1.1".utf8))
        XCTAssertTrue(reader.sawBytes)
    }
}
