import Testing
@testable import TriglavMetrics

@Suite("Scrape endpoint HTTP, sans-IO")
struct ScrapeHTTPTests {
    static let prometheusRequest = Array("""
        GET /metrics HTTP/1.1\r
        Host: 127.0.0.1:9743\r
        User-Agent: Prometheus/2.53.0\r
        Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1\r
        Accept-Encoding: gzip\r
        X-Prometheus-Scrape-Timeout-Seconds: 10\r
        \r

        """.utf8)

    @Test func aPrometheusScrapeParses() {
        #expect(ScrapeHTTP.parse(Self.prometheusRequest) == .request(method: "GET", path: "/metrics"))
    }

    @Test func feedingInPiecesGivesTheSameVerdictsAsFeedingWhole() {
        let heads = [Self.prometheusRequest, Array("GET /x HTTP/1.1\n\n".utf8), Array("GET /metrics HTTP/1.1\r\nbad\r\n\r\n".utf8)]
        for head in heads {
            for piece in [1, 2, 3, 7] {
                var fed: [UInt8] = []
                var verdict = ScrapeHTTP.Parse.incomplete
                while verdict == .incomplete, fed.count < head.count {
                    let start = fed.count
                    fed += head[start..<min(start + piece, head.count)]
                    verdict = ScrapeHTTP.parse(fed, newBytesAt: start)
                }
                #expect(verdict == ScrapeHTTP.parse(head), "pieces of \(piece)")
                #expect(fed.count == head.count, "the verdict came before the blank line ended")
            }
        }
    }

    @Test func everyPrefixOfARequestIsIncompleteAndTheWholeIsNot() {
        for end in 0..<Self.prometheusRequest.count {
            #expect(ScrapeHTTP.parse(Array(Self.prometheusRequest[..<end])) == .incomplete, "prefix of \(end) bytes")
        }
    }

    @Test(arguments: [
        ("GET /metrics HTTP/1.0\n\n", ScrapeHTTP.Parse.request(method: "GET", path: "/metrics")),
        ("HEAD /metrics?x=1 HTTP/1.1\r\n\r\n", .request(method: "HEAD", path: "/metrics")),
        ("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", .request(method: "POST", path: "/metrics")),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", .request(method: "GET", path: "/")),
        ("GET /metrics HTTP/2.0\r\n\r\n", .unsupportedVersion("HTTP/2.0")),
        ("\r\n\r\n", .malformed("empty request line")),
        ("GET /metrics\r\n\r\n", .malformed("the request line is not 'METHOD TARGET HTTP/1.1'")),
        ("GET  /metrics HTTP/1.1\r\n\r\n", .malformed("the request line is not 'METHOD TARGET HTTP/1.1'")),
        ("G(T /metrics HTTP/1.1\r\n\r\n", .malformed("invalid method \"G(T\"")),
        ("GET metrics HTTP/1.1\r\n\r\n", .malformed("the request target \"metrics\" is not a path")),
        ("GET /metrics FTP/1.1\r\n\r\n", .malformed("no HTTP version in the request line")),
        ("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", .malformed("a header line is not 'Name: value'")),
        ("GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n", .malformed("a header line is not 'Name: value'")),
        ("GET /metrics HTTP/1.1\r\nX: a\u{1}b\r\n\r\n", .malformed("control bytes in a header value")),
        ("GET /m\u{7}etrics HTTP/1.1\r\n\r\n", .malformed("control or non-ASCII bytes in the request line")),
    ])
    func requestHeads(text: String, expected: ScrapeHTTP.Parse) {
        #expect(ScrapeHTTP.parse(Array(text.utf8)) == expected)
    }

    @Test func binaryGarbageIsMalformedNotACrash() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            var bytes = (0..<Int.random(in: 0..<300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            bytes += [13, 10, 13, 10]
            switch ScrapeHTTP.parse(bytes) {
            case .request(let method, _): #expect(method.utf8.allSatisfy(ScrapeHTTP.isTokenByte))
            case .incomplete: Issue.record("a head with a blank line is complete")
            default: break
            }
        }
    }

    @Test func aHeadWithoutEndIsTooLargeAtTheLimit() {
        let endless = Array("GET /metrics HTTP/1.1\r\nX-Pad: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: ScrapeHTTP.maximumHeadBytes)
        #expect(ScrapeHTTP.parse(Array(endless.prefix(ScrapeHTTP.maximumHeadBytes - 1))) == .incomplete)
        #expect(ScrapeHTTP.parse(endless) == .tooLarge)
        // A complete head past the limit too.
        #expect(ScrapeHTTP.parse(endless + Array("\r\n\r\n".utf8)) == .tooLarge)
    }

    static func text(_ response: ScrapeHTTP.Response?) -> String {
        String(decoding: response?.bytes ?? [], as: UTF8.self)
    }

    @Test func getOfTheMetricsPathServesTheExposition() {
        var asked = 0
        let response = ScrapeHTTP.response(to: .request(method: "GET", path: "/metrics")) { asked += 1; return "a 1\n" }
        #expect(asked == 1)
        #expect(Self.text(response) == """
            HTTP/1.1 200 OK\r
            Content-Type: text/plain; version=0.0.4; charset=utf-8\r
            Content-Length: 4\r
            Connection: close\r
            \r
            a 1

            """)
    }

    @Test func headGetsTheHeadersWithoutTheBody() {
        let response = ScrapeHTTP.response(to: .request(method: "HEAD", path: "/metrics")) { "a 1\n" }
        #expect(Self.text(response).hasSuffix("Content-Length: 4\r\nConnection: close\r\n\r\n"))
        #expect(response?.status == 200)
    }

    @Test func otherPathsAre404AndOtherMethods405WithoutRendering() {
        var asked = 0
        let notFound = ScrapeHTTP.response(to: .request(method: "GET", path: "/")) { asked += 1; return "" }
        #expect(notFound?.status == 404)
        #expect(Self.text(notFound).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        let postElsewhere = ScrapeHTTP.response(to: .request(method: "POST", path: "/other")) { asked += 1; return "" }
        #expect(postElsewhere?.status == 404)
        let post = ScrapeHTTP.response(to: .request(method: "POST", path: "/metrics")) { asked += 1; return "" }
        #expect(post?.status == 405)
        #expect(Self.text(post).contains("\r\nAllow: GET, HEAD\r\n"))
        #expect(asked == 0)
    }

    @Test func verdictsWithoutARequestMapToTheirStatus() {
        #expect(ScrapeHTTP.response(to: .incomplete) { "" } == nil)
        #expect(ScrapeHTTP.response(to: .malformed("x")) { "" }?.status == 400)
        #expect(ScrapeHTTP.response(to: .tooLarge) { "" }?.status == 431)
        #expect(ScrapeHTTP.response(to: .unsupportedVersion("HTTP/2.0")) { "" }?.status == 505)
        #expect(ScrapeHTTP.response(to: .request(method: "GET", path: "/metrics")) { nil }?.status == 500)
    }

    @Test func contentLengthCountsBytesNotCharacters() {
        let body = "x{c=\"ü\"} 1\n"  // 11 characters, 12 bytes
        let response = ScrapeHTTP.response(to: .request(method: "GET", path: "/metrics")) { body }
        #expect(body.count == 11)
        #expect(Self.text(response).contains("Content-Length: 12\r\n"))
    }
}
