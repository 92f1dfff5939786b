import TriglavMultipath
import TriglavProtocol

extension FeedbackReport {
    /// The engine's view of a feedback frame's body, as both pumps hand it over.
    init(_ body: FeedbackBody) {
        self.init(highestCounter: body.highestCounter, receivedPackets: body.receivedPackets,
                  receivedBytes: body.receivedBytes, reportedAt: body.reportedAt)
    }
}
