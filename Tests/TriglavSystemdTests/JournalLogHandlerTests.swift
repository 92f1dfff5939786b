import Foundation
import Logging
import Synchronization
import Testing
@testable import TriglavSystemd

private final class CapturingSink: Sendable {
    let entries = Mutex<[[String]]>([])
    let result: Int32
    init(result: Int32 = 0) { self.result = result }
    var sink: JournalLogHandler.Sink { { fields in self.entries.withLock { $0.append(fields) }; return self.result } }
}

@Suite("Journal log handler")
struct JournalLogHandlerTests {
    @Test func buildsStructuredFieldsFromMetadata() {
        let capture = CapturingSink()
        var logger = Logger(label: "triglav.daemon") { label in
            JournalLogHandler(label: label, identifier: "triglavd", logLevel: .debug, sink: capture.sink)
        }
        logger[metadataKey: "session"] = "4f2a"
        logger.warning("uplink lost carrier", metadata: ["uplink": "uplink#3", "interface": "wlan0"])
        logger.trace("not logged below debug")
        let entries = capture.entries.withLock { $0 }
        #expect(entries.count == 1)
        let fields = entries.first ?? []
        #expect(Array(fields.prefix(4)) == ["MESSAGE=uplink lost carrier", "PRIORITY=4", "SYSLOG_IDENTIFIER=triglavd",
                                           "TRIGLAV_LOGGER=triglav.daemon"])
        #expect(fields.contains { $0.hasPrefix("CODE_FILE=") && $0.contains("JournalLogHandlerTests") })
        #expect(Array(fields.suffix(3)) == ["INTERFACE=wlan0", "SESSION=4f2a", "UPLINK=uplink#3"])
    }

    @Test func mapsMetadataKeysToValidFieldNames() {
        #expect(JournalLogHandler.fieldName(forMetadataKey: "uplink") == "UPLINK")
        #expect(JournalLogHandler.fieldName(forMetadataKey: "peer.endpoint") == "PEER_ENDPOINT")
        #expect(JournalLogHandler.fieldName(forMetadataKey: "_trusted") == "TRIGLAV__TRUSTED")
        #expect(JournalLogHandler.fieldName(forMetadataKey: "1st") == "TRIGLAV_1ST")
        #expect(JournalLogHandler.fieldName(forMetadataKey: "message") == "TRIGLAV_MESSAGE")
        #expect(JournalLogHandler.fieldName(forMetadataKey: "") == "TRIGLAV_")
        #expect(JournalLogHandler.fieldName(forMetadataKey: String(repeating: "k", count: 100)).count == 64)
    }

    @Test func mapsLevelsToSyslogPriorities() {
        #expect(JournalLogHandler.priority(of: .trace) == 7)
        #expect(JournalLogHandler.priority(of: .info) == 6)
        #expect(JournalLogHandler.priority(of: .notice) == 5)
        #expect(JournalLogHandler.priority(of: .error) == 3)
        #expect(JournalLogHandler.priority(of: .critical) == 2)
    }

    @Test func fallsBackToAReadableStderrLine() {
        let line = JournalLogHandler.fallbackLine(label: "triglav.netlink", level: .error, message: "dump failed",
                                                  metadata: ["interface": "eth0", "uplink": "uplink#1"])
        #expect(line == "error triglav.netlink: dump failed interface=eth0 uplink=uplink#1\n")
        // A failing sink must not crash or throw; the entry goes to stderr instead.
        let failing = CapturingSink(result: -111)
        let logger = Logger(label: "x") { JournalLogHandler(label: $0, identifier: "t", sink: failing.sink) }
        logger.error("journal down")
        #expect(failing.entries.withLock { $0.count } == 1)
    }

    @Test func realJournalSendValidatesFields() {
        // libsystemd drops entries silently (returns 0) when journald is not running, so success is the
        // answer with or without a journal; malformed fields are refused either way.
        let rc = JournalLogHandler.sendToJournal(["MESSAGE=triglav journal handler test", "PRIORITY=7",
                                                  "SYSLOG_IDENTIFIER=triglav-test", "INTERFACE=lo",
                                                  "MESSAGE_DETAIL=line one\nline two"])
        #expect(rc == 0)
        #expect(JournalLogHandler.sendToJournal(["no equals sign"]) < 0)
        #expect(JournalLogHandler.sendToJournal([]) < 0)
    }

    @Test func choosesTheJournalOnlyUnderSystemd() {
        let stderrIdentity = (device: UInt64(64769), inode: UInt64(12345))
        #expect(SystemdLogging.shouldUseJournal(environment: ["JOURNAL_STREAM": "64769:12345"],
                                                standardErrorIdentity: stderrIdentity, systemdBooted: false))
        // stderr redirected elsewhere by the user: the inherited JOURNAL_STREAM no longer applies
        #expect(!SystemdLogging.shouldUseJournal(environment: ["JOURNAL_STREAM": "64769:999"],
                                                 standardErrorIdentity: stderrIdentity, systemdBooted: false))
        #expect(SystemdLogging.shouldUseJournal(environment: ["INVOCATION_ID": "abc"],
                                                standardErrorIdentity: stderrIdentity, systemdBooted: true))
        #expect(!SystemdLogging.shouldUseJournal(environment: ["INVOCATION_ID": "abc"],
                                                 standardErrorIdentity: stderrIdentity, systemdBooted: false))
        #expect(!SystemdLogging.shouldUseJournal(environment: [:], standardErrorIdentity: nil, systemdBooted: true))
    }
}
