const { IPCClient } = require('./ipc-framework-nodejs');

class RobustIPCClient {
    constructor(appId, options = {}) {
        this.appId = appId;
        this.client = new IPCClient(appId, {
            reconnectAttempts: 10,
            reconnectDelay: 3000,
            heartbeatInterval: 30000,
            ...options
        });
        
        this.setupErrorHandling();
        this.setupCircuitBreaker();
    }
    
    setupErrorHandling() {
        this.client.onError((error) => {
            console.error(`IPC Error [${this.appId}]:`, error.message);
            
            // Log to monitoring system
            this.logError('ipc_connection_error', error);
        });
        
        this.client.onDisconnected(() => {
            console.warn(`IPC Disconnected [${this.appId}]`);
            
            // Notify monitoring
            this.logEvent('ipc_disconnected');
        });
        
        this.client.onConnected(() => {
            console.log(`IPC Connected [${this.appId}]`);
            
            // Reset circuit breaker on successful connection
            this.circuitBreaker.reset();
            
            this.logEvent('ipc_connected');
        });
    }
    
    setupCircuitBreaker() {
        this.circuitBreaker = {
            failures: 0,
            threshold: 5,
            timeout: 30000,
            state: 'CLOSED', // CLOSED, OPEN, HALF_OPEN
            lastFailTime: null
        };
    }
    
    async makeRequest(channelId, payload, options = {}) {
        // Check circuit breaker
        if (this.circuitBreaker.state === 'OPEN') {
            if (Date.now() - this.circuitBreaker.lastFailTime > this.circuitBreaker.timeout) {
                this.circuitBreaker.state = 'HALF_OPEN';
            } else {
                throw new Error('Circuit breaker is OPEN');
            }
        }
        
        try {
            const response = await this.client.sendRequest(channelId, payload, options.timeout);
            
            // Reset failure count on success
            if (this.circuitBreaker.state === 'HALF_OPEN') {
                this.circuitBreaker.state = 'CLOSED';
            }
            this.circuitBreaker.failures = 0;
            
            return response;
            
        } catch (error) {
            this.circuitBreaker.failures++;
            this.circuitBreaker.lastFailTime = Date.now();
            
            if (this.circuitBreaker.failures >= this.circuitBreaker.threshold) {
                this.circuitBreaker.state = 'OPEN';
                console.error(`Circuit breaker opened for ${this.appId}`);
            }
            
            // Log the error
            this.logError('ipc_request_error', error, {
                channelId,
                payload: JSON.stringify(payload).substr(0, 200)
            });
            
            throw error;
        }
    }
    
    async makeRequestWithRetry(channelId, payload, options = {}) {
        const maxRetries = options.retries || 3;
        const retryDelay = options.retryDelay || 1000;
        const backoffMultiplier = options.backoffMultiplier || 2;
        
        let lastError;
        
        for (let attempt = 0; attempt < maxRetries; attempt++) {
            try {
                return await this.makeRequest(channelId, payload, options);
                
            } catch (error) {
                lastError = error;
                
                if (attempt < maxRetries - 1) {
                    const delay = retryDelay * Math.pow(backoffMultiplier, attempt);
                    console.warn(`Request failed, retrying in ${delay}ms (attempt ${attempt + 1}/${maxRetries})`);
                    await this.sleep(delay);
                }
            }
        }
        
        throw new Error(`Request failed after ${maxRetries} attempts: ${lastError.message}`);
    }
    
    async safeRequest(channelId, payload, options = {}) {
        try {
            return await this.makeRequestWithRetry(channelId, payload, options);
        } catch (error) {
            // Return default value or handle gracefully
            if (options.defaultValue !== undefined) {
                console.warn(`Request failed, using default value:`, options.defaultValue);
                return { payload: options.defaultValue };
            }
            
            if (options.throwOnError !== false) {
                throw error;
            }
            
            return null;
        }
    }
    
    logError(type, error, context = {}) {
        const logEntry = {
            timestamp: new Date().toISOString(),
            type: type,
            appId: this.appId,
            error: {
                message: error.message,
                stack: error.stack
            },
            context: context
        };
        
        // Send to logging service or console
        console.error('IPC Error Log:', JSON.stringify(logEntry, null, 2));
        
        // Could send to external monitoring
        // this.sendToMonitoring(logEntry);
    }
    
    logEvent(type, data = {}) {
        const logEntry = {
            timestamp: new Date().toISOString(),
            type: type,
            appId: this.appId,
            data: data
        };
        
        console.log('IPC Event Log:', JSON.stringify(logEntry));
    }
    
    sleep(ms) {
        return new Promise(resolve => setTimeout(resolve, ms));
    }
    
    async connect() {
        return await this.client.connect();
    }
    
    disconnect() {
        this.client.disconnect();
    }
    
    getCircuitBreakerState() {
        return this.circuitBreaker;
    }
}

// Usage
const robustClient = new RobustIPCClient('robust-app');

robustClient.connect().then(async () => {
    // Safe request with default value
    const userData = await robustClient.safeRequest('user_service', {
        action: 'get_user',
        user_id: 123
    }, {
        defaultValue: { name: 'Unknown User' },
        retries: 3,
        timeout: 5000
    });
    
    console.log('User data:', userData.payload);
});
