'use strict';

// The addon, through the loader `napi build` generates (binding.js), which
// picks the `.node` file built for this platform.
module.exports = require('../binding.js');
