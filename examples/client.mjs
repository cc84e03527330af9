// A client on its own: a Socket connects to a server (the URL on the
// command line), sends once it is open, prints the first answer and
// closes. It reconnects by itself if the connection drops before that.
import { Socket } from 'mytosis-websocket'

const url = process.argv[2] ?? 'ws://localhost:8080'
const socket = new Socket(url)

socket.on('open', () => socket.send({ hello: 'server' }))
socket.messages.forEach((message) => {
  console.log(`client got ${JSON.stringify(message)}`)
  socket.close()
})
