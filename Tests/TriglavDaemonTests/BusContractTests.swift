import Foundation
import Testing
import TriglavControlAPI
import TriglavControlBus
import TriglavDBus
@testable import TriglavDaemon

@Suite("org.triglav contract (dbus/org.triglav.xml)")
struct BusContractTests {
    static func contract() throws -> Set<ContractMember> {
        Contract.members(fromXML: try String(contentsOfFile: BusTestPaths.contractXML, encoding: .utf8))
    }

    @Test func contractFileDescribesAllFourInterfaces() throws {
        let members = try Self.contract()
        #expect(Set(members.map(\.interface)) == [TriglavBus.managerInterface, TriglavBus.uplinkInterface,
                                                  TriglavBus.serverInterface, TriglavBus.clientInterface])
        #expect(members.contains(ContractMember(interface: TriglavBus.managerInterface, name: "AddUplink", kind: "method",
                                                signature: "sa{sv}", result: "o", writable: false)))
        #expect(members.count > 40)
    }

    @Test func adaptorInterfacesEqualTheContract() throws {
        let generated = DBusIntrospection.document(interfaces: TriglavBusAdaptor.interfaceShapes(), children: [])
        let exported = Contract.members(fromXML: generated)
        let contract = try Self.contract()
        #expect(exported.subtracting(contract).isEmpty, "exported but not in the XML: \(exported.subtracting(contract))")
        #expect(contract.subtracting(exported).isEmpty, "in the XML but not exported: \(contract.subtracting(exported))")
    }

    @Test func propertySpecsMatchTheContract() throws {
        let contract = try Self.contract()
        let records: [(String, [PropertySpec])] = [(TriglavBus.managerInterface, TriglavControlAPI.ManagerStatus.propertySpecs),
                                                   (TriglavBus.uplinkInterface, TriglavControlAPI.UplinkStatus.propertySpecs),
                                                   (TriglavBus.serverInterface, TriglavControlAPI.ServerStatus.propertySpecs),
                                                   (TriglavBus.clientInterface, TriglavControlAPI.ClientStatus.propertySpecs)]
        for (interface, specs) in records {
            let declared = Set(contract.filter { $0.interface == interface && $0.kind == "property" }
                .map { "\($0.name):\($0.signature):\($0.writable)" })
            #expect(Set(specs.map { "\($0.name):\($0.signature):\($0.writable)" }) == declared, "\(interface)")
        }
    }

    /// Option keys, their types and enum values live in comments of the XML and in docs/DBUS.md; both must
    /// list what the code accepts.
    @Test func documentedOptionsAndStatesMatchTheCode() throws {
        let xml = try String(contentsOfFile: BusTestPaths.contractXML, encoding: .utf8)
        let docs = try String(contentsOfFile: URL(fileURLWithPath: BusTestPaths.contractXML).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/DBUS.md").path, encoding: .utf8)
        for (key, signature) in TriglavControlAPI.ConnectOptions.allowedKeys {
            #expect(xml.contains("\(key) (\(signature)"), "Connect option \(key) (\(signature)) missing from the XML")
            #expect(docs.contains("`\(key)` (\(signature)"), "Connect option \(key) (\(signature)) missing from DBUS.md")
        }
        let states = TriglavControlAPI.UplinkState.allCases.map(\.rawValue)
        #expect(xml.contains("State: " + states.joined(separator: " | ")), "Uplink1 states in the XML: \(states)")
        for state in states { #expect(docs.contains("| `\(state)` |"), "Uplink1 state \(state) missing from DBUS.md's table") }
    }

    @Test func statusRecordsRoundTripThroughPropertyValues() {
        let uplink = TriglavControlAPI.UplinkStatus(id: 0, interface: "wlan0", kind: .wifi, origin: .manual, state: .degraded, tier: .backup,
                                  metered: true, enabled: false, rttUsec: 1, jitterUsec: 2, lossRatio: 0.5, capacityBps: 3,
                                  txBytes: 4, rxBytes: 5, localAddress: "192.0.2.1", transport: .tcp, routeToServer: false,
                                  rxRateBps: 6, pathMTU: 1396, pathMTUBlackhole: true, gsoDatagrams: 7, groDatagrams: 8)
        #expect(TriglavControlAPI.UplinkStatus(propertyValues: uplink.propertyDictionary) == uplink)
        let manager = TriglavControlAPI.ManagerStatus(state: .connecting, profile: "p", server: "s:1", tunnelInterface: "tg0",
                                    tunnelAddresses: ["10.0.0.1/24"], scheduler: "x", txBytes: 1, rxBytes: 2, uplinks: [3, 7], version: "v",
                                    counters: [NamedCounter("read_packets", 9), NamedCounter("queue_dropped_packets", 0)],
                                    dnsServers: ["10.0.0.53"], dnsDomains: ["corp.example", "~."], dnsError: "e", tunnelMTU: 1332)
        #expect(TriglavControlAPI.ManagerStatus(propertyValues: manager.propertyDictionary) == manager)
        let server = TriglavControlAPI.ServerStatus(enabled: true, listenAddress: "0.0.0.0:7443", publicKey: "k", clients: [1],
                                                    txBytes: 3, rxBytes: 4, counters: [NamedCounter("handshakes", 5)],
                                                    offeredDNS: ["10.0.0.53", "corp.example"])
        #expect(TriglavControlAPI.ServerStatus(propertyValues: server.propertyDictionary) == server)
        let client = TriglavControlAPI.ClientStatus(id: 0, publicKey: "k", endpoint: "e:1", tunnelAddresses: ["a"], state: .degraded, paths: 3,
                                  rttUsec: 4, txBytes: 5, rxBytes: 6, connectedSinceUsec: 7,
                                  pathDetails: [ClientPathStatus(uplink: 1, endpoint: "192.0.2.1:4", transport: .tcp, state: .degraded,
                                                                 rttUsec: 8, jitterUsec: 9, lossRatio: 0.25, rxBytes: 10, txBytes: 11),
                                                ClientPathStatus(uplink: 3, endpoint: "", state: .probing)])
        #expect(TriglavControlAPI.ClientStatus(propertyValues: client.propertyDictionary) == client)
        for value in uplink.propertyValues.map(\.value) + manager.propertyValues.map(\.value) + client.propertyValues.map(\.value)
            + server.propertyValues.map(\.value) {
            #expect(ControlValue(value.dbusValue) == value)
            #expect(value.dbusValue.signature.rawValue == value.signature)
        }
        let noPaths = ControlValue.records(fields: ClientPathStatus.fields, [])
        #expect(ControlValue(noPaths.dbusValue) == noPaths && noPaths.dbusValue.signature.rawValue == "a(usssttdtt)")
    }

    @Test("a path record of another shape is refused, not half-read")
    func foreignPathRecordsAreRefused() {
        #expect(ControlValue(.array(elementSignature: "(us)", [.string("not a structure")])) == nil)
        #expect(ClientPathStatus(record: [.uint32(1), .string("192.0.2.1:4")]) == nil)
        var record = ClientPathStatus(uplink: 1, endpoint: "e", state: .ready).record
        record[3] = .string("sideways")
        #expect(ClientPathStatus(record: record) == nil, "an unknown state")
        record[3] = .uint64(1)
        #expect(ClientPathStatus(record: record) == nil, "a mistyped member")
        let client = TriglavControlAPI.ClientStatus(propertyValues: ["PathDetails": .records(fields: "us", [[.uint32(1), .string("e")]])])
        #expect(client.pathDetails.isEmpty)
    }

    @Test func optionsAreValidated() throws {
        #expect(try TriglavControlAPI.ConnectOptions(options: ["scheduler": .string("redundant"), "server": .string("vpn.example.net:7443")])
                == TriglavControlAPI.ConnectOptions(scheduler: "redundant", server: "vpn.example.net:7443"))
        #expect(throws: ControlError.self) { try TriglavControlAPI.ConnectOptions(options: ["bogus": .string("x")]) }
        #expect(throws: ControlError.self) { try TriglavControlAPI.ConnectOptions(options: ["server": .string("no-port")]) }
        #expect(throws: ControlError.self) { try TriglavControlAPI.ConnectOptions(options: ["scheduler": .boolean(true)]) }
        #expect(try TriglavControlAPI.ConnectOptions(options: ["full-tunnel": .boolean(false)]).fullTunnel == false)
        #expect(throws: ControlError.invalidArgument("Connect option full-tunnel must be of type b, got s")) {
            try TriglavControlAPI.ConnectOptions(options: ["full-tunnel": .string("yes")])
        }
        #expect(throws: ControlError.self) { try TriglavControlAPI.UplinkOptions(options: ["tier": .string("gold")]) }
        #expect(try TriglavControlAPI.UplinkOptions(options: ["tier": .string("never"), "metered": .boolean(true)]) == TriglavControlAPI.UplinkOptions(tier: .never, metered: true))
        #expect(isValidInterfaceName("wlp3s0") && !isValidInterfaceName("") && !isValidInterfaceName("a/b")
                && !isValidInterfaceName("sixteen-chars-xx"))
        #expect(ControlError.allNames.allSatisfy { ControlError(busName: $0, message: "m")?.busName == $0 })
    }
}
