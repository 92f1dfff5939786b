/// The HTTP side of a scrape endpoint, sans-IO: parsing a request head from the bytes read so far and building
/// the response to it. The socket server (in the daemon) reads into a bounded buffer, asks `parse` after every
/// read, and writes `response(...).bytes` once a verdict is in; it always closes the connection afterwards.
///
/// Only what a scraper needs: `GET` (and `HEAD`) of one path, HTTP/1.0 and 1.1, no request body, no keep-alive.
public enum ScrapeHTTP {
    /// Longest request head accepted (request line and headers, with the blank line). Prometheus sends about
    /// 300 bytes; anything near this limit is not a scraper.
    public static let maximumHeadBytes = 8192

    /// What the bytes read so far amount to.
    public enum Parse: Equatable, Sendable {
        /// No blank line yet, and still within `maximumHeadBytes`: read more.
        case incomplete
        /// A well-formed request head. `path` is the request target without its query string.
        case request(method: String, path: String)
        /// Not an HTTP/1.x request head (400), with the reason for the log.
        case malformed(String)
        /// No blank line within `maximumHeadBytes` (431).
        case tooLarge
        /// A well-formed request line of an HTTP version other than 1.x (505).
        case unsupportedVersion(String)
    }

    /// Parses the request head at the start of `bytes`. Accepts CRLF line ends, and bare LF as RFC 9112 §2.2
    /// allows; refuses control characters, missing parts and header lines without a colon.
    ///
    /// `newBytesAt`: where the bytes added since the last call (which returned `.incomplete`) begin; the search
    /// for the blank line starts just before it, so feeding a head in small pieces costs linear time, not
    /// quadratic.
    public static func parse(_ bytes: [UInt8], newBytesAt start: Int = 0) -> Parse {
        guard let headEnd = endOfHead(bytes, from: max(0, start - 3)) else {
            return bytes.count >= maximumHeadBytes ? .tooLarge : .incomplete
        }
        guard headEnd <= maximumHeadBytes else { return .tooLarge }
        var lines = bytes[..<headEnd].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first, !requestLine.isEmpty else { return .malformed("empty request line") }
        guard requestLine.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            return .malformed("control or non-ASCII bytes in the request line")
        }
        let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            return .malformed("the request line is not 'METHOD TARGET HTTP/1.1'")
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        guard method.utf8.allSatisfy(isTokenByte) else { return .malformed("invalid method \"\(method)\"") }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version.hasPrefix("HTTP/") else { return .malformed("no HTTP version in the request line") }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .unsupportedVersion(version) }
        let target = String(decoding: parts[1], as: UTF8.self)
        guard target.hasPrefix("/") || target == "*" else {
            return .malformed("the request target \"\(target)\" is not a path")
        }
        for header in lines.dropFirst() {
            guard let colon = header.firstIndex(of: UInt8(ascii: ":")), colon > header.startIndex,
                  header[..<colon].allSatisfy(isTokenByte) else {
                return .malformed("a header line is not 'Name: value'")
            }
            guard header[colon...].allSatisfy({ $0 >= 0x20 || $0 == 0x09 }) else {
                return .malformed("control bytes in a header value")
            }
        }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? target
        return .request(method: method, path: path)
    }

    /// The byte index just past the blank line ending the head, or nil when there is none yet.
    static func endOfHead(_ bytes: [UInt8], from start: Int = 0) -> Int? {
        var index = start
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\n") { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == UInt8(ascii: "\r"), bytes[index + 2] == UInt8(ascii: "\n") {
                    return index + 3
                }
            }
            index += 1
        }
        return nil
    }

    /// RFC 9110 §5.6.2 tchar.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// A response; always `Connection: close`.
    public struct Response: Equatable, Sendable {
        public var status: Int
        public var reason: String
        public var headers: [(String, String)]
        public var body: [UInt8]
        /// HEAD: the headers of the GET response (its Content-Length included) without the body.
        public var omitsBody = false

        public init(status: Int, reason: String, headers: [(String, String)] = [], body: [UInt8] = []) {
            self.status = status
            self.reason = reason
            self.headers = headers
            self.body = body
        }

        public static func == (lhs: Response, rhs: Response) -> Bool {
            lhs.status == rhs.status && lhs.reason == rhs.reason && lhs.body == rhs.body && lhs.omitsBody == rhs.omitsBody
                && lhs.headers.map(\.0) == rhs.headers.map(\.0) && lhs.headers.map(\.1) == rhs.headers.map(\.1)
        }

        /// Status line, headers (with Content-Length and Connection: close) and body.
        public var bytes: [UInt8] {
            var head = "HTTP/1.1 \(status) \(reason)\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
            return Array(head.utf8) + (omitsBody ? [] : body)
        }

        static func text(_ status: Int, _ reason: String, _ message: String, headers: [(String, String)] = []) -> Response {
            Response(status: status, reason: reason, headers: [("Content-Type", "text/plain; charset=utf-8")] + headers,
                     body: Array((message + "\n").utf8))
        }
    }

    /// The response to a parse verdict: `GET`/`HEAD` of `path` gets `exposition()` (evaluated only then) as
    /// the Prometheus text format, or 500 when it returns nil (it logs why); another path 404; another method on the path 405 (with `Allow`); garbage
    /// 400; an oversized head 431; another HTTP version 505. `.incomplete` has no response (nil).
    public static func response(to parse: Parse, path metricsPath: String = "/metrics",
                                exposition: () -> String?) -> Response? {
        switch parse {
        case .incomplete:
            return nil
        case .malformed(let reason):
            return .text(400, "Bad Request", "bad request: \(reason)")
        case .tooLarge:
            return .text(431, "Request Header Fields Too Large",
                         "request head longer than \(maximumHeadBytes) bytes")
        case .unsupportedVersion(let version):
            return .text(505, "HTTP Version Not Supported", "\(version) is not supported; use HTTP/1.1")
        case .request(let method, let path):
            guard path == metricsPath else {
                return .text(404, "Not Found", "not found; metrics are at \(metricsPath)")
            }
            guard method == "GET" || method == "HEAD" else {
                return .text(405, "Method Not Allowed", "method \(method) not allowed; use GET", headers: [("Allow", "GET, HEAD")])
            }
            guard let text = exposition() else {
                return .text(500, "Internal Server Error", "the metrics could not be rendered; see the daemon's log")
            }
            var response = Response(status: 200, reason: "OK", headers: [("Content-Type", PrometheusText.contentType)],
                                    body: Array(text.utf8))
            response.omitsBody = method == "HEAD"
            return response
        }
    }
}
