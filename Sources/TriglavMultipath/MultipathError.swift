import TriglavCore

/// Errors of the multipath engine's management calls. The per-packet paths never throw.
public enum MultipathError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `addUplink` with an ID the engine already manages.
    case duplicateUplink(UplinkID)
    /// A call named an uplink the engine doesn't know (removed, or never added).
    case unknownUplink(UplinkID)
    /// Adding would exceed `MultipathLimits.maxUplinks`.
    case tooManyUplinks(limit: Int)
    /// A configuration value is out of range.
    case invalidConfiguration(field: String, value: String, reason: String)
    /// A scheduler name that isn't one of `SchedulerMode.allCases`.
    case unknownScheduler(String)

    public var description: String {
        switch self {
        case .duplicateUplink(let id):
            return "\(id) is already part of the tunnel; remove it first or use a new ID"
        case .unknownUplink(let id):
            return "\(id) is not part of the tunnel (was it removed?)"
        case .tooManyUplinks(let limit):
            return "a tunnel can bond at most \(limit) uplinks; remove one before adding another"
        case .invalidConfiguration(let field, let value, let reason):
            return "invalid multipath setting \(field) = \(value): \(reason)"
        case .unknownScheduler(let name):
            let known = SchedulerMode.allCases.map(\.rawValue).joined(separator: ", ")
            return "unknown scheduler '\(name)'; use one of: \(known)"
        }
    }
}
