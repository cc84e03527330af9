// wss:// served by the Server itself: its certificate and key are PEM
// files, named on the command line (default ./cert.pem and ./key.pem). For
// a self-signed pair for localhost:
//   openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem \
//     -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1
import { readFileSync } from 'node:fs'
import { Server, Socket } from 'mytosis-websocket'

const [certFile = 'cert.pem', keyFile = 'key.pem'] = process.argv.slice(2)
const cert = readFileSync(certFile, 'utf8')
const key = readFileSync(keyFile, 'utf8')

const server = new Server({ port: 0, host: '127.0.0.1', tls: { cert, key } }) // in production: port 443
server.messages.forEach((message, connection) => connection.send({ echo: message }))
const { port } = await server.ready

// A self-signed certificate is trusted only where it is given as `ca`
// (a certificate from a public CA needs no `tls` option).
const client = new Socket(`wss://127.0.0.1:${port}`, { tls: { ca: cert } })
client.send({ hello: 'over tls' })
client.messages.forEach(async (message) => {
  console.log(`client got ${JSON.stringify(message)}`)
  client.close()
  await server.close()
})
