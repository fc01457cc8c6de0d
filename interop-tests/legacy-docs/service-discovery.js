const { IPCClient } = require('./ipc-framework-nodejs');

class MicroserviceClient {
    constructor(serviceName, options = {}) {
        this.serviceName = serviceName;
        this.client = new IPCClient(`${serviceName}-client`, {
            host: options.host || process.env.IPC_HOST || 'localhost',
            port: options.port || process.env.IPC_PORT || 8888,
            ...options
        });
        
        this.services = new Map();
        this.isReady = false;
    }
    
    async initialize() {
        await this.client.connect();
        
        // Subscribe to service discovery updates
        this.client.subscribe('service_discovery', (message) => {
            this.handleServiceUpdate(message.payload);
        });
        
        // Request current service list
        const response = await this.client.sendRequest('system', {
            action: 'list_services'
        });
        
        if (response.payload.services) {
            response.payload.services.forEach(service => {
                this.services.set(service.name, service);
            });
        }
        
        this.isReady = true;
        console.log(`âœ… ${this.serviceName} initialized with ${this.services.size} available services`);
    }
    
    handleServiceUpdate(update) {
        const { action, service } = update;
        
        switch (action) {
            case 'service_registered':
                this.services.set(service.name, service);
                console.log(`ðŸ“ Service registered: ${service.name}`);
                break;
                
            case 'service_unregistered':
                this.services.delete(service.name);
                console.log(`ðŸ“ Service unregistered: ${service.name}`);
                break;
                
            case 'service_health_changed':
                if (this.services.has(service.name)) {
                    this.services.get(service.name).healthy = service.healthy;
                }
                break;
        }
    }
    
    async callService(serviceName, action, data = {}, options = {}) {
        if (!this.isReady) {
            throw new Error('Microservice client not initialized');
        }
        
        const service = this.services.get(serviceName);
        if (!service) {
            throw new Error(`Service not found: ${serviceName}`);
        }
        
        if (!service.healthy) {
            throw new Error(`Service unhealthy: ${serviceName}`);
        }
        
        return await this.client.sendRequest(serviceName, {
            action: action,
            data: data,
            source_service: this.serviceName,
            ...options
        });
    }
    
    async broadcastEvent(eventType, data) {
        this.client.publish('events', {
            type: eventType,
            data: data,
            source: this.serviceName,
            timestamp: Date.now()
        });
    }
    
    subscribeToEvents(eventType, handler) {
        this.client.subscribe('events', (message) => {
            if (message.payload.type === eventType) {
                handler(message.payload);
            }
        });
    }
    
    getAvailableServices() {
        return Array.from(this.services.values());
    }
    
    async shutdown() {
        this.client.disconnect();
    }
}

// Example usage
class UserService extends MicroserviceClient {
    constructor() {
        super('user-service');
    }
    
    async createUser(userData) {
        // Validate with validation service
        const validation = await this.callService('validation-service', 'validate_user', userData);
        
        if (!validation.payload.valid) {
            throw new Error(`Validation failed: ${validation.payload.errors.join(', ')}`);
        }
        
        // Create user via database service
        const result = await this.callService('database-service', 'create_user', userData);
        
        // Broadcast user created event
        await this.broadcastEvent('user_created', {
            userId: result.payload.user_id,
            userData: userData
        });
        
        return result.payload;
    }
    
    async getUserById(userId) {
        // Try cache first
        try {
            const cached = await this.callService('cache-service', 'get', { key: `user:${userId}` });
            if (cached.payload.found) {
                return cached.payload.data;
            }
        } catch (error) {
            console.warn('Cache service unavailable, falling back to database');
        }
        
        // Get from database
        const result = await this.callService('database-service', 'get_user', { user_id: userId });
        
        // Cache the result
        try {
            await this.callService('cache-service', 'set', {
                key: `user:${userId}`,
                data: result.payload,
                ttl: 3600
            });
        } catch (error) {
            console.warn('Failed to cache user data');
        }
        
        return result.payload;
    }
}

// Start the service
const userService = new UserService();
userService.initialize().then(() => {
    console.log('User service ready');
});
