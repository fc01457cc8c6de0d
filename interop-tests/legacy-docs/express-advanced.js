const express = require('express');
const { IPCClient } = require('./ipc-framework-nodejs');

class IPCExpressService {
    constructor() {
        this.app = express();
        this.client = null;
        this.isReady = false;
        
        this.setupMiddleware();
        this.setupRoutes();
    }
    
    async initialize() {
        // Initialize IPC client
        this.client = new IPCClient('express-service', {
            host: process.env.IPC_HOST || 'localhost',
            port: parseInt(process.env.IPC_PORT) || 8888,
            reconnectAttempts: 10,
            reconnectDelay: 3000
        });
        
        // Set up connection handlers
        this.client.onConnected(() => {
            console.log('âœ… IPC client connected');
            this.isReady = true;
        });
        
        this.client.onDisconnected(() => {
            console.log('âš ï¸ IPC client disconnected');
            this.isReady = false;
        });
        
        this.client.onError((error) => {
            console.error('âŒ IPC client error:', error.message);
        });
        
        // Connect
        const connected = await this.client.connect();
        if (!connected) {
            throw new Error('Failed to connect to IPC server');
        }
        
        return this;
    }
    
    setupMiddleware() {
        this.app.use(express.json());
        this.app.use(express.urlencoded({ extended: true }));
        
        // Add IPC client to request context
        this.app.use((req, res, next) => {
            req.ipc = this.client;
            req.ipcReady = this.isReady;
            next();
        });
        
        // Health check middleware
        this.app.use('/api/*', (req, res, next) => {
            if (!this.isReady) {
                return res.status(503).json({
                    error: 'IPC service unavailable',
                    message: 'Connection to Python server is not ready'
                });
            }
            next();
        });
    }
    
    setupRoutes() {
        // Generic API proxy
        this.app.all('/api/:service/:action', async (req, res) => {
            try {
                const { service, action } = req.params;
                const payload = {
                    action: action,
                    data: req.body,
                    query: req.query,
                    method: req.method
                };
                
                const response = await req.ipc.sendRequest(service, payload, 30000);
                
                res.json({
                    success: true,
                    result: response.payload
                });
                
            } catch (error) {
                res.status(500).json({
                    success: false,
                    error: error.message
                });
            }
        });
        
        // Real-time events
        this.app.get('/events/:channel', (req, res) => {
            const { channel } = req.params;
            
            res.writeHead(200, {
                'Content-Type': 'text/event-stream',
                'Cache-Control': 'no-cache',
                'Connection': 'keep-alive'
            });
            
            req.ipc.subscribe(channel, (message) => {
                res.write(`data: ${JSON.stringify(message.payload)}\n\n`);
            });
            
            req.on('close', () => {
                req.ipc.unsubscribe(channel);
            });
        });
        
        // System status
        this.app.get('/status', async (req, res) => {
            try {
                const connectionInfo = this.client?.getConnectionInfo();
                const isHealthy = await this.client?.healthCheck();
                
                res.json({
                    status: 'ok',
                    ipc: {
                        connected: this.isReady,
                        healthy: isHealthy,
                        connection: connectionInfo
                    },
                    timestamp: new Date().toISOString()
                });
            } catch (error) {
                res.status(500).json({
                    status: 'error',
                    error: error.message
                });
            }
        });
    }
    
    async start(port = 3000) {
        await this.initialize();
        
        return new Promise((resolve) => {
            this.server = this.app.listen(port, () => {
                console.log(`ðŸš€ IPC Express Service running on port ${port}`);
                resolve(this);
            });
        });
    }
    
    async stop() {
        if (this.client) {
            this.client.disconnect();
        }
        
        if (this.server) {
            this.server.close();
        }
    }
}

// Usage
const service = new IPCExpressService();
service.start(process.env.PORT);

// Graceful shutdown
process.on('SIGINT', async () => {
    console.log('Shutting down...');
    await service.stop();
    process.exit(0);
});
