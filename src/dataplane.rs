//! Starting and stopping the datapath threads.
