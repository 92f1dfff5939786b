// Test fixture: hosts the org.triglav bus adaptor with the fake controller on a given bus, so
// integration tests (and people trying the CLI) can drive the real API without privileges or a
// tunnel. Not installed. Usage:
//   triglav-bus-fixture --address ADDR [--uplinks eth0,wlan0] [--unrouted wlan0] [--routing-error MSG] [--clients N]
//                       [--blackhole wlan0:1396]
//                       [--tick-ms MS] [--allow-anyone]
//   triglav-bus-fixture --address ADDR --fake-resolved LOG   (a stand-in for systemd-resolved: see FakeResolved.swift)
// Without --allow-anyone only root and members of group triglav may change state (as in triglavd).
// SIGUSR1 makes "eth1" appear as an automatic uplink, SIGUSR2 makes it disappear. --unrouted uplinks start
// with no route to the server (Uplink1.RouteToServer false); SIGHUP makes their routes appear. With
// --routing-error MSG, a connected tunnel reports that the kernel refused its routes (Manager1.RoutingError);
// SIGHUP ends that too.
import Dispatch
import Logging
import TriglavControlAPI
import TriglavDBus
import TriglavDaemon
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    StandardError.write(message)
    exit(2)
}

enum StandardError {
    static func write(_ message: String) {
        let line = message + "\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }
}

var address = BusConnection.systemBusAddress
var initialUplinks = ["eth0", "wlan0"]
var clientCount = 0
var tickMilliseconds = 0
var unrouted: [String] = []
var blackholes: [(String, UInt32)] = []
var routingError: String?
var authorization = CallerAuthorization.standard
var fakeResolvedLog: String?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--address":
        guard let value = arguments.next() else { fail("--address needs a value") }
        address = value
    case "--uplinks": initialUplinks = (arguments.next() ?? "").split(separator: ",").map(String.init)
    case "--unrouted": unrouted = (arguments.next() ?? "").split(separator: ",").map(String.init)
    case "--routing-error":
        guard let value = arguments.next(), !value.isEmpty else { fail("--routing-error needs a message") }
        routingError = value
    case "--clients":
        guard let value = arguments.next().flatMap({ Int($0) }) else { fail("--clients needs a number") }
        clientCount = value
    case "--tick-ms":
        guard let value = arguments.next().flatMap({ Int($0) }) else { fail("--tick-ms needs a number") }
        tickMilliseconds = value
    case "--blackhole":
        // A path MTU blackhole the client's probes found on an uplink: INTERFACE:PATH_MTU.
        let parts = (arguments.next() ?? "").split(separator: ":").map(String.init)
        guard parts.count == 2, let pathMTU = UInt32(parts[1]) else { fail("--blackhole needs INTERFACE:PATH_MTU") }
        blackholes.append((parts[0], pathMTU))
    case "--allow-anyone": authorization = .anyone
    case "--fake-resolved":
        guard let log = arguments.next(), !log.isEmpty else { fail("--fake-resolved needs a log file") }
        fakeResolvedLog = log
    default: fail("unknown argument \(argument)")
    }
}

if let fakeResolvedLog { runFakeResolved(address: address, log: fakeResolvedLog) }

let controller = FakeTunnelController()
for interface in initialUplinks { controller.simulateUplinkAppeared(interface: interface) }
for interface in unrouted { controller.simulateRouteToServer(interface: interface, present: false) }
if let routingError { controller.simulateRoutingFailure(routingError) }
for (interface, pathMTU) in blackholes { controller.simulatePathMTUBlackhole(interface: interface, pathMTU: pathMTU) }
for index in 0..<clientCount {
    controller.simulateClientConnected(publicKey: "client\(index)-public-key", endpoint: "203.0.113.\(index + 5):40000")
}

let connection: BusConnection
do {
    connection = try BusConnection(address: address)
} catch {
    fail("triglav-bus-fixture: \(error)")
}
let adaptor = TriglavBusAdaptor(connection: connection, controller: controller, authorization: authorization)
controller.setOnChange { adaptor.publish($0) }

signal(SIGUSR1, SIG_IGN)
signal(SIGUSR2, SIG_IGN)
let appear = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: .main)
appear.setEventHandler { controller.simulateUplinkAppeared(interface: "eth1") }
appear.resume()
let vanish = DispatchSource.makeSignalSource(signal: SIGUSR2, queue: .main)
vanish.setEventHandler { controller.simulateUplinkGone(interface: "eth1") }
vanish.resume()
signal(SIGHUP, SIG_IGN)
let routed = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .main)
routed.setEventHandler {
    for interface in unrouted { controller.simulateRouteToServer(interface: interface, present: true) }
    if routingError != nil { controller.simulateRoutingFailure(nil) }
}
routed.resume()

connection.onDisconnect { exit(0) }

Task {
    do {
        try await adaptor.start()
        print("READY \(connection.uniqueName)")
        fflush(nil)
    } catch {
        fail("triglav-bus-fixture: \(error)")
    }
    if tickMilliseconds > 0 {
        while true {
            try? await Task.sleep(for: .milliseconds(tickMilliseconds))
            controller.tick()
        }
    }
}
dispatchMain()
