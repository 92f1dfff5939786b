internal import CSystemd
import Dispatch

/// A udev event about a network interface, as udevd broadcast it after running its rules.
public struct DeviceEvent: Sendable, Equatable {
    /// "add", "change", "move", "remove", "bind", …
    public var action: String
    public var interfaceName: String
    public var interfaceIndex: Int32
    /// The device's properties after the rules ran (TRIGLAV_*, ID_NET_*, USEC_INITIALIZED, …).
    public var properties: DeviceProperties
}

/// Watches udev's events for network interfaces through libsystemd's sd-device monitor, so properties set
/// by rules are seen when udev finishes with a device (late initialisation, `udevadm trigger`, a changed
/// rule) and not only when the link first appears.
///
/// The monitor runs on an sd-event loop whose epoll fd is watched by a `DispatchSource` on `queue`; every
/// libsystemd call happens on that queue (sd-event and sd-device objects are not thread-safe), and so does
/// the handler. Only udevd's broadcasts are received (the "udev" netlink group): without a running udevd
/// nothing arrives. Lifetime: `start()` once; `stop()` (or deinit) cancels the source and frees the monitor.
public final class DeviceMonitor: @unchecked Sendable {
    private let queue: DispatchQueue
    private let handler: @Sendable (DeviceEvent) -> Void
    // Owned by `queue` once started.
    private var event: OpaquePointer?
    private var monitor: OpaquePointer?
    private var source: (any DispatchSourceRead)?

    public init(queue: DispatchQueue, handler: @escaping @Sendable (DeviceEvent) -> Void) {
        self.queue = queue
        self.handler = handler
    }

    deinit {
        source?.cancel()
        if let monitor { _ = sd_device_monitor_unref(monitor) }
        if let event { _ = sd_event_unref(event) }
    }

    /// Opens the monitor (subsystem "net") and starts delivering events on the queue.
    public func start() throws(SystemdError) {
        var event: OpaquePointer?
        var rc = sd_event_new(&event)
        guard rc >= 0, let event else { throw .deviceMonitorFailed(operation: "sd_event_new", errno: -rc) }
        var monitor: OpaquePointer?
        rc = sd_device_monitor_new(&monitor)
        guard rc >= 0, let monitor else {
            _ = sd_event_unref(event)
            throw .deviceMonitorFailed(operation: "sd_device_monitor_new", errno: -rc)
        }
        self.event = event
        self.monitor = monitor
        rc = sd_device_monitor_filter_add_match_subsystem_devtype(monitor, "net", nil)
        guard rc >= 0 else { throw .deviceMonitorFailed(operation: "filter subsystem net", errno: -rc) }
        rc = sd_device_monitor_attach_event(monitor, event)
        guard rc >= 0 else { throw .deviceMonitorFailed(operation: "sd_device_monitor_attach_event", errno: -rc) }
        // The monitor lives as long as self (stop/deinit unref it), so an unretained pointer is enough.
        rc = sd_device_monitor_start(monitor, { _, device, userdata in
            guard let device, let userdata else { return 0 }
            Unmanaged<DeviceMonitor>.fromOpaque(userdata).takeUnretainedValue().deliver(device)
            return 0
        }, Unmanaged.passUnretained(self).toOpaque())
        guard rc >= 0 else { throw .deviceMonitorFailed(operation: "sd_device_monitor_start", errno: -rc) }
        let fd = sd_event_get_fd(event)
        guard fd >= 0 else { throw .deviceMonitorFailed(operation: "sd_event_get_fd", errno: -fd) }
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { [weak self] in self?.dispatchPending() }
        self.source = source
        source.activate()
    }

    /// Stops delivery; no handler call starts after the queue has run this.
    public func stop() {
        queue.sync {
            source?.cancel()
            source = nil
            if let monitor { _ = sd_device_monitor_stop(monitor); _ = sd_device_monitor_unref(monitor) }
            if let event { _ = sd_event_unref(event) }
            monitor = nil
            event = nil
        }
    }

    /// Runs what the loop has ready without blocking (bounded: a flood is handled over several wakeups).
    private func dispatchPending() {
        guard let event else { return }
        for _ in 0..<64 where sd_event_run(event, 0) > 0 {}
    }

    private func deliver(_ device: OpaquePointer) {
        var action = sd_device_action_t(rawValue: 0)
        let actionName = sd_device_get_action(device, &action) >= 0 ? Self.name(of: action) : "unknown"
        var name: UnsafePointer<CChar>?
        var index: Int32 = 0
        guard sd_device_get_sysname(device, &name) >= 0, let name, sd_device_get_ifindex(device, &index) >= 0 else { return }
        handler(DeviceEvent(action: actionName, interfaceName: String(cString: name), interfaceIndex: index,
                            properties: DeviceProperties(DeviceProperties.propertyValues(of: device))))
    }

    private static func name(of action: sd_device_action_t) -> String {
        switch action {
        case SD_DEVICE_ADD: "add"
        case SD_DEVICE_REMOVE: "remove"
        case SD_DEVICE_CHANGE: "change"
        case SD_DEVICE_MOVE: "move"
        case SD_DEVICE_ONLINE: "online"
        case SD_DEVICE_OFFLINE: "offline"
        case SD_DEVICE_BIND: "bind"
        case SD_DEVICE_UNBIND: "unbind"
        default: "unknown"
        }
    }
}
