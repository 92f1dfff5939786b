public import TriglavControlAPI
// The daemon core declares types with some of the same names (UplinkStatus, UplinkOptions, …) for
// its own state; everything here means the D-Bus contract, so contract types are always qualified.

/// The daemon core as the D-Bus adaptor sees it: commands in, snapshots out.
///
/// Contract for implementers:
/// - Every method may suspend (it runs in its own task, never on the bus thread) but should finish
///   promptly; long work (handshakes) continues in the background and is reported through status.
/// - Throw `ControlError` with a message a user can act on; the adaptor sends it as
///   `org.triglav.Error.<Case>`. Arguments arrive already type-checked and validated syntactically
///   (interface names, enum values, option keys); semantic checks (unknown profile, wrong state) are yours.
/// - `status()` returns the complete current snapshot. The adaptor calls it at start and after every
///   successful command; whenever state changes on its own (uplink found, counters, handshake done)
///   call `TriglavBusAdaptor.publish(_:)` with a fresh snapshot. The adaptor diffs snapshots into
///   exported objects, InterfacesAdded/Removed and PropertiesChanged (counters at most once a second),
///   so publishing often is cheap.
/// - Uplink and client ids must be stable for an object's lifetime and never reused while the daemon
///   runs (they name D-Bus objects).
public protocol TunnelController: Sendable {
    /// The complete current state.
    func status() async -> TriglavControlAPI.TriglavStatus
    /// Manager1.Connect. `alreadyConnected` unless disconnected; `notFound` for an unknown profile.
    func connect(profile: String, options: TriglavControlAPI.ConnectOptions) async throws(ControlError)
    /// Manager1.Disconnect. `notConnected` when already disconnected.
    func disconnect() async throws(ControlError)
    /// Manager1.AddUplink: pins an interface as a manual uplink and returns its id.
    /// `notFound` when there is no such interface; `invalidArgument` when it is already an uplink.
    func addUplink(interface: String, options: TriglavControlAPI.UplinkOptions) async throws(ControlError) -> UInt32
    /// Manager1.RemoveUplink. `notFound` for an unknown id.
    func removeUplink(id: UInt32) async throws(ControlError)
    /// Writes of Uplink1.Tier/Metered/Enabled/Transport (one field set per call). `notFound` for an unknown id.
    func configureUplink(id: UInt32, settings: TriglavControlAPI.UplinkOptions) async throws(ControlError)
    /// Write of Manager1.Scheduler. `invalidArgument` for an unknown scheduler name.
    func setScheduler(_ name: String) async throws(ControlError)
    /// Manager1.Reload: re-read configuration (as SIGHUP does).
    func reload() async throws(ControlError)
    /// Server1.DisconnectClient. `notFound` for an unknown id.
    func disconnectClient(id: UInt32) async throws(ControlError)
}
