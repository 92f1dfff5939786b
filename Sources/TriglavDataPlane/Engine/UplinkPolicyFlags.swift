import TriglavMultipath

/// The client's uplink policy, carried in the (authenticated, multipath-defined) flags byte of every control
/// frame it sends on that uplink, because the server schedules the download direction and must honour the
/// same tiers: bit 7 = policy present, bits 0–1 = tier (0 primary, 1 secondary, 2 backup, 3 never),
/// bit 2 = metered. The data cap stays on the client. Zero means "no policy" (an older peer).
enum UplinkPolicyFlags {
    static let present: UInt8 = 0x80
    static let metered: UInt8 = 0x04

    static func encode(_ policy: UplinkPolicy) -> UInt8 {
        let tier: UInt8 = switch policy.tier {
        case .primary: 0
        case .secondary: 1
        case .backup: 2
        case .never: 3
        }
        return present | tier | (policy.isMetered ? metered : 0)
    }

    /// The policy in `flags`, nil when the sender sent none.
    static func decode(_ flags: UInt8) -> UplinkPolicy? {
        guard flags & present != 0 else { return nil }
        let tier: UplinkTier = switch flags & 0x03 {
        case 0: .primary
        case 1: .secondary
        case 2: .backup
        default: .never
        }
        return UplinkPolicy(tier: tier, isMetered: flags & metered != 0)
    }
}
