import Testing
@testable import TriglavConfig

/// `[multipath] redundant_copies`: how many uplinks the `redundant` scheduler sends each packet on.
@Suite struct RedundantCopiesConfigTests {
    @Test func absentMeansEveryUsableUplink() throws {
        #expect(try ConfigLoader.parseDaemonConfig("", file: "x").multipath.redundantCopies == nil)
        #expect(try ConfigLoader.parseDaemonConfig("[multipath]\nscheduler = \"redundant\"", file: "x").multipath.redundantCopies == nil)
    }

    @Test(arguments: [(0, nil), (1, 1), (2, 2), (16, 16)] as [(Int, Int?)])
    func acceptedValues(written: Int, copies: Int?) throws {
        let config = try ConfigLoader.parseDaemonConfig("""
            [multipath]
            scheduler = "redundant"
            redundant_copies = \(written)
            """, file: "x")
        #expect(config.multipath.redundantCopies == copies)
        #expect(config.multipath.scheduler == .redundant)
    }

    @Test(arguments: [
        ("redundant_copies = 17", "must be 0 to 16 copies"),
        ("redundant_copies = -1", "-1 is out of range"),
        ("redundant_copies = \"2\"", "expected an integer, got a string"),
        ("redundant_copies = 2.5", "expected an integer, got a floating-point number"),
        ("redundant_copy = 2", "did you mean 'redundant_copies'?"),
    ])
    func rejectedValuesSayWhatIsAllowed(line: String, fragment: String) {
        let key = line.split(separator: " ")[0]
        expectSingleDiagnostic("[multipath]\n\(line)", at: "multipath.\(key)", containing: fragment)
    }
}
