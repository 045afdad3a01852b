//! dnsmasq's lease file: `<expiry|0> <mac> <ip> <hostname|*> <client-id|*>`
//! per line. Exported for tools that read it; imported on first start.
