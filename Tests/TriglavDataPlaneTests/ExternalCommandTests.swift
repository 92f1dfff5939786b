import Foundation
import Testing
@testable import TriglavDataPlane

/// Running a system tool: input, output, exit status, and no wait on what it leaves running or on a hang.
@Suite struct ExternalCommandTests {
    @Test func theInputReachesItAndTheOutputAndStatusComeBack() {
        #expect(ExternalCommand.run(["/bin/cat"], input: "nameserver 10.77.0.1\n") == (0, "nameserver 10.77.0.1"))
        let failed = ExternalCommand.run(["sh", "-c", "echo bad input >&2; exit 3"])
        #expect(failed.status == 3 && failed.output == "bad input")
        #expect(ExternalCommand.run(["/nonexistent/tool"]).status == -1)
    }

    @Test func aProcessLeftRunningInTheBackgroundDoesNotHoldTheCaller() {
        let start = ContinuousClock.now
        let result = ExternalCommand.run(["/bin/sh", "-c", "sleep 3 & echo updated"])
        #expect(result == (0, "updated"))
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func theProgramStartsWithDefaultSignalsWhateverTheCallerIgnores() {
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        // grep reads its own status, which it inherits from the shell the call started: SIGHUP, SIGINT, SIGPIPE and
        // SIGTERM not ignored, nothing blocked (glibc's internal real-time signals aside).
        let result = ExternalCommand.run(["/bin/sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"])
        func mask(_ name: String) -> UInt64? {
            result.output.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 16) }
        }
        let daemonIgnored: UInt64 = [SIGHUP, SIGINT, SIGPIPE, SIGTERM].reduce(0) { $0 | 1 << UInt64($1 - 1) }
        #expect(mask("SigIgn").map { $0 & daemonIgnored } == 0, "\(result)")
        #expect(mask("SigBlk").map { $0 & 0xffff_ffff } == 0, "\(result)")
    }

    @Test func oneThatHangsIsKilledAtTheTimeout() {
        let start = ContinuousClock.now
        let result = ExternalCommand.run(["/bin/sleep", "10"], timeout: .milliseconds(200))
        #expect(result.status == -1 && result.output.contains("did not finish"), "\(result)")
        #expect(ContinuousClock.now - start < .seconds(3))
    }
}
