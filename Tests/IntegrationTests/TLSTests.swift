import Foundation
import GatewayClient
import GatewayProtocol
import XCTest

/// `server.tls_cert` / `server.tls_key`: one port serving `wss://` and `https://` with a
/// self-signed certificate, and the start refused when the files are half given or unusable.
final class TLSTests: IntegrationCase {
    func startTLSNode(_ name: String = "n1") throws -> GatewayNodeProcess {
        let node = try GatewayNodeProcess(name: name, redisPort: redis?.port ?? 0, tls: true)
        nodes.append(node)
        return node
    }

    func testWSSAndHTTPSOnOnePort() throws {
        let node = try startTLSNode()
        XCTAssertTrue(node.log().contains("listening on wss://127.0.0.1:\(node.port)/ws and https://127.0.0.1:\(node.port)/"), node.log())
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
        // A body of several TLS records, over the HTTP/1.1 the node offers (curl would take h2).
        let script = try node.http("GET", "/client/gateway-client.js", key: nil)
        XCTAssertEqual(script.status, 200)
        XCTAssertGreaterThan(script.body.count, 16_384)
        XCTAssertTrue(script.text.contains("export class GatewayClient"), String(script.text.prefix(200)))

        let (session, reply) = try open(node, "u1")
        XCTAssertEqual(reply["ok"]?["user"]?.stringValue, "u1", "\(reply)")
        XCTAssertEqual(try publish(node, "user:u1", 1), 1)
        let pushed = try XCTUnwrap(session.nextPush())
        XCTAssertEqual(pushed["channel"]?.stringValue, "user:u1")
        XCTAssertEqual(pushed["data"]?["n"]?.intValue, 1)
        XCTAssertNotNil(try session.command("ping")["ok"])
        session.close()
    }

    /// A body the client holds back until `100 Continue`: that line must go out through TLS
    /// too, or the client reads garbage where the handshake's records should be.
    func testExpectContinueOverTLS() throws {
        let node = try startTLSNode()
        let body = #"{"id":"p-tls","merchant":"m1","title":"Card p-tls","price":1999,"currency":"CNY"}"#
        let r = try node.http("POST", "/api/v1/products", body: body, headers: ["Expect": "100-continue"])
        XCTAssertEqual(r.status, 201, r.text)
        XCTAssertEqual(try product(node, "p-tls")["id"]?.stringValue, "p-tls")
    }

    /// The client checks certificates unless told otherwise: a self-signed one is refused.
    func testClientVerifiesCertificatesByDefault() throws {
        let node = try startTLSNode()
        let strict = try ClientLoop()
        defer { strict.shutdown() }
        XCTAssertThrowsError(try GatewaySession.open(loop: strict, url: node.wsURL, token: token("u1")))
    }

    /// Plain HTTP and `ws://` to the TLS port get no answer, and the node goes on serving.
    func testPlainTextToTheTLSPortFailsCleanly() throws {
        let node = try startTLSNode()
        for _ in 0..<10 {
            let reply = try? rawExchange(port: node.port, Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8),
                                         readUntilClose: true, timeout: 5)
            XCTAssertFalse(String(decoding: reply ?? [], as: UTF8.self).contains("HTTP/1.1 200"))
        }
        let plainLoop = Self.loop
        XCTAssertThrowsError(try GatewaySession.open(loop: plainLoop, url: "ws://127.0.0.1:\(node.port)/ws", token: token("u1")))
        XCTAssertEqual(try node.http("GET", "/healthz").status, 200)
        let (session, _) = try open(node, "u2")
        XCTAssertNotNil(try session.command("ping")["ok"])
    }

    func testRefusesToStartWithHalfOrUnusableFiles() throws {
        let (cert, key) = try TestTLS.files
        let notPEM = FileManager.default.temporaryDirectory.appendingPathComponent("gw-not-pem-\(getpid()).txt")
        try Data("just some text\n".utf8).write(to: notPEM)
        defer { try? FileManager.default.removeItem(at: notPEM) }
        let cases: [([String: String], String)] = [
            (["GATEWAY_SERVER_TLS_CERT": cert], "server.tls_cert is set but server.tls_key is not"),
            (["GATEWAY_SERVER_TLS_KEY": key], "server.tls_key is set but server.tls_cert is not"),
            (["GATEWAY_SERVER_TLS_CERT": "/nonexistent/cert.pem", "GATEWAY_SERVER_TLS_KEY": key],
             "server.tls_cert: cannot read /nonexistent/cert.pem"),
            (["GATEWAY_SERVER_TLS_CERT": cert, "GATEWAY_SERVER_TLS_KEY": notPEM.path],
             "server.tls_key: \(notPEM.path) holds no PEM private key"),
            // Both PEM, but the certificate given as the key: lws refuses it.
            (["GATEWAY_SERVER_TLS_CERT": cert, "GATEWAY_SERVER_TLS_KEY": cert], "holds no PEM private key"),
            (["GATEWAY_SERVER_TLS_CERT": key, "GATEWAY_SERVER_TLS_KEY": key], "holds no PEM certificate"),
        ]
        for (env, expected) in cases {
            let node = try GatewayNodeProcess(name: "bad-tls", redisPort: redis?.port ?? 0, env: env, waitReady: false, tls: false)
            let status = node.waitExit(timeout: 15)
            XCTAssertNotNil(status, "the node kept running with \(env)")
            XCTAssertNotEqual(status, 0)
            XCTAssertTrue(node.log().contains(expected), "expected \(expected) in: \(node.log().suffix(500))")
            XCTAssertFalse(node.log().contains("listening on"), node.log())
        }
    }

    /// A key under a pass phrase: OpenSSL would prompt on the terminal (or fail blaming the
    /// certificate without one); the node refuses it by name instead.
    func testRefusesAnEncryptedKey() throws {
        let (cert, key) = try TestTLS.files
        let locked = FileManager.default.temporaryDirectory.appendingPathComponent("gw-locked-key-\(getpid()).pem").path
        let (status, output) = try TestTLS.run("/usr/bin/openssl", ["pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", locked])
        XCTAssertEqual(status, 0, output)
        defer { try? FileManager.default.removeItem(atPath: locked) }
        let node = try GatewayNodeProcess(name: "locked-key", redisPort: redis?.port ?? 0,
                                          env: ["GATEWAY_SERVER_TLS_CERT": cert, "GATEWAY_SERVER_TLS_KEY": locked], waitReady: false, tls: false)
        XCTAssertNotNil(node.waitExit(timeout: 15), "the node kept running (or waits for a pass phrase)")
        XCTAssertTrue(node.log().contains("is encrypted with a pass phrase"), node.log().suffix(500).description)
        XCTAssertFalse(node.log().contains("listening on"), node.log())
    }

    /// A key that is PEM but not the certificate's: lws rejects the pair at listen time.
    func testRefusesAKeyThatIsNotTheCertificates() throws {
        let (cert, _) = try TestTLS.files
        let other = FileManager.default.temporaryDirectory.appendingPathComponent("gw-other-key-\(getpid()).pem").path
        let (status, output) = try TestTLS.run("/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", other])
        XCTAssertEqual(status, 0, output)
        defer { try? FileManager.default.removeItem(atPath: other) }
        let node = try GatewayNodeProcess(name: "bad-pair", redisPort: redis?.port ?? 0,
                                          env: ["GATEWAY_SERVER_TLS_CERT": cert, "GATEWAY_SERVER_TLS_KEY": other], waitReady: false, tls: false)
        let exit = node.waitExit(timeout: 15)
        XCTAssertNotNil(exit, "the node kept running with a mismatched key")
        XCTAssertNotEqual(exit, 0)
        XCTAssertTrue(node.log().contains("could not start TLS"), node.log().suffix(500).description)
    }
}
