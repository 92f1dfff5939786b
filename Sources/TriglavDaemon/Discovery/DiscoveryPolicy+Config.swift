public import TriglavConfig
import TriglavCore
import TriglavMultipath

extension DiscoveryPolicy {
    /// The policy the daemon's configuration asks for: `[uplinks] include/exclude` as globs, each
    /// `[uplinks.interface.NAME]` as a pin (its tier and metered flag override udev and kind defaults),
    /// and include patterns other than a bare "*" also admitting virtual devices they name.
    public init(uplinks: UplinkSettings, tunnelInterface: InterfaceName) {
        self.init(
            include: uplinks.include.map(\.pattern),
            exclude: uplinks.exclude.map(\.pattern),
            virtualInterfaces: uplinks.include.map(\.pattern).filter { $0 != "*" },
            pins: uplinks.pins.map { pin in
                Pin(pattern: pin.match.pattern, tier: TriglavMultipath.UplinkTier(rawValue: pin.tier.rawValue),
                    isMetered: pin.metered)
            },
            tunnelInterface: tunnelInterface.rawValue)
    }
}
