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

    @Test func oneThatHangsIsKilledAtTheTimeout() {
        let start = ContinuousClock.now
        let result = ExternalCommand.run(["/bin/sleep", "10"], timeout: .milliseconds(200))
        #expect(result.status == -1 && result.output.contains("did not finish"), "\(result)")
        #expect(ContinuousClock.now - start < .seconds(3))
    }
}
